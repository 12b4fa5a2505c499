"""The lab pipeline definition, the loader and the pipeline version."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline_defs import diabetes_training
from retrainer.pipelines import (PipelineDefinition, UnknownPipelineError, load_definition, local_datastore,
                                 pipeline_version, data_contract)

ROOT = Path(__file__).resolve().parents[2]


def load():
    return load_definition("diabetes_training", datastore=local_datastore("training_data", "incoming"),
                           compute_target="cpu-cluster")


def test_the_lab_pipeline_is_prep_then_train_on_a_mounted_data_path():
    from azureml.data.datapath import DataPath

    from retrainer.localrun.graph import DataInput, Intermediate, Parameter, read_graph

    definition = load()
    prep, train = read_graph(definition.steps)

    assert (prep.name, prep.script_name, train.name, train.script_name) == (
        "prep", "prep_diabetes.py", "train", "train_diabetes.py")
    assert prep.arguments == ("--input-data", DataInput("input_data", "training_data", "diabetes.csv", "mount"),
                              "--input-data-version", Parameter("input_data_version", "unversioned"),
                              "--data-contract", json.dumps(diabetes_training.DATA_CONTRACT, sort_keys=True),
                              "--prepped-data", Intermediate("prepped_data", "prep"))
    # the intermediate stays off the watched datastore: the workspace default, unless one is named
    assert prep.output_datastores == {"prepped_data": None}
    assert train.arguments == ("--training-data", Intermediate("prepped_data", "prep"))
    assert prep.allow_reuse and train.allow_reuse
    assert prep.source_directory == ROOT / "step_scripts"
    assert prep.environment.name == "diabetes-env"
    assert isinstance(definition.parameters["input_data"].default_value, DataPath)
    assert definition.environment_file == ROOT / "step_scripts" / "environment.yml"
    assert [s._compute_target for s in definition.steps] == ["cpu-cluster", "cpu-cluster"]


def test_intermediates_go_to_the_named_datastore_and_change_the_version():
    from retrainer.localrun.graph import read_graph

    scratch = load_definition("diabetes_training", datastore=local_datastore("training_data", "incoming"),
                              compute_target="cpu-cluster", intermediate_datastore=local_datastore("scratch", "s"))
    prep, _ = read_graph(scratch.steps)
    assert prep.output_datastores == {"prepped_data": "scratch"}
    assert pipeline_version(scratch) != pipeline_version(load())


def test_the_data_contract_is_read_without_importing_azureml():
    code = ("import sys; from retrainer.pipelines import data_contract; "
            "print(','.join(data_contract('diabetes_training'))); "
            "print(any(m.startswith(('azureml', 'mlflow')) for m in sys.modules))")
    output = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)

    columns, heavy_imported = output.stdout.split()
    assert columns.split(",") == list(data_contract("diabetes_training"))
    assert "PlasmaGlucose" in columns and "Diabetic" in columns and "PatientID" not in columns
    assert heavy_imported == "False"


def test_an_unknown_pipeline_names_the_known_ones():
    with pytest.raises(UnknownPipelineError, match="unknown pipeline 'nope'; known pipelines: .*diabetes_training"):
        data_contract("nope")
    with pytest.raises(UnknownPipelineError):
        load_definition("../etc/passwd", datastore=None, compute_target="x")


def test_the_version_is_stable_and_follows_every_file_of_the_source_directory(tmp_path):
    from pipeline_defs import diabetes_training

    source = tmp_path / "step_scripts"
    shutil.copytree(ROOT / "step_scripts", source, ignore=shutil.ignore_patterns("__pycache__"))

    def version():
        steps, parameters = diabetes_training.build(local_datastore("training_data", "incoming"), "cpu-cluster",
                                                    source_directory=source)
        return pipeline_version(PipelineDefinition("diabetes_training", tuple(steps), parameters,
                                                   source / "environment.yml"))

    first = version()
    assert version() == first and len(first) >= 16

    (source / "notes.txt").write_text("any file counts")
    second = version()
    assert second != first

    (source / "environment.yml").write_text((source / "environment.yml").read_text() + "\n# changed\n")
    assert version() not in (first, second)


def test_the_version_follows_parameter_defaults():
    first = pipeline_version(load())
    other = load_definition("diabetes_training", datastore=local_datastore("other_store", "incoming"),
                            compute_target="cpu-cluster")

    assert pipeline_version(other) != first
