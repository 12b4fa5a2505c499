"""The v1 definition translated into an SDK v2 pipeline, checked on the body azure-ai-ml itself builds offline
(`_to_rest_object()`, serialised with its own JSON encoder).

The lab pipeline's REST body is kept in tests/golden/: a change to the translation shows there in review.
After an intended change, rewrite it with `RETRAINER_UPDATE_GOLDEN=1 .venv/bin/python -m pytest -q <this file>`.
"""
from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

import pytest

from pipeline_defs import diabetes_training
from retrainer import pipelines
from retrainer.adapters.azureml_v2 import job_inputs, path_type, pipeline_job
from retrainer.adapters.azureml_v2_translate import UntranslatableStepError, translate
from retrainer.pipelines import PipelineDefinition
from tests.fixtures.localrun import pipeline as fixture_pipeline

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests" / "golden" / "azureml_v2_diabetes_training.json"
VERSION = "0123456789abcdef0123456789abcdef"
FINGERPRINT = "etag:0x8DC0123456789AB"


def rest_json(entity) -> dict:
    """An entity's REST body as azure-ai-ml sends it. Offline the step components are not registered yet, so
    each node's componentId is still the component: shown as the body that registers it."""
    from azure.ai.ml._restclient.arm_ml_service._utils.model_base import SdkJSONEncoder
    from azure.ai.ml.entities import Component

    class Encoder(SdkJSONEncoder):
        def default(self, o):
            return o._to_rest_object() if isinstance(o, Component) else super().default(o)

    text = json.dumps(entity._to_rest_object(), cls=Encoder, sort_keys=True)
    return json.loads(text.replace(str(REPO), "<repo>"))


def lab_definition() -> PipelineDefinition:
    return pipelines.load_definition("diabetes_training", compute_target="cpu-cluster",
                                     datastore=pipelines.local_datastore("training_data", "incoming"))


@pytest.fixture(scope="module")
def lab():
    translated = translate(lab_definition(), VERSION)
    job = pipeline_job(f"azureml:diabetes_training:{VERSION}",
                       job_inputs(translated, {"input_data": "2026/diabetes.csv", "input_data_version": FINGERPRINT},
                                  path_type),
                       name="retrainer-0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c", experiment="diabetes-retraining",
                       tags={"retrainer.app": "retrainer",
                             "retrainer.key_sha": "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c"},
                       compute="cpu-cluster")
    return {"pipeline_component": rest_json(translated), "job": rest_json(job)}


def test_the_lab_pipeline_body_matches_the_golden_file(lab):
    rendered = json.dumps(lab, indent=1, sort_keys=True) + "\n"
    if os.environ.get("RETRAINER_UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(rendered)
    assert GOLDEN.is_file(), f"{GOLDEN} is missing: run with RETRAINER_UPDATE_GOLDEN=1 to write it"
    assert rendered == GOLDEN.read_text(), (f"the translation changed; if intended, rewrite {GOLDEN.name} with "
                                            "RETRAINER_UPDATE_GOLDEN=1 and review its diff")


def test_the_lab_pipeline_has_its_two_steps_wired_prep_to_train(lab):
    spec = lab["pipeline_component"]["properties"]["componentSpec"]
    prep, train = spec["jobs"]["prep"], spec["jobs"]["train"]
    prep_spec = prep["componentId"]["properties"]["componentSpec"]
    train_spec = train["componentId"]["properties"]["componentSpec"]

    assert list(spec["jobs"]) == ["prep", "train"] and spec["version"] == VERSION
    contract = shlex.quote(json.dumps(diabetes_training.DATA_CONTRACT, sort_keys=True))
    assert prep_spec["command"] == ("python prep_diabetes.py --input-data ${{inputs.input_data}} "
                                    "--input-data-version ${{inputs.input_data_version}} "
                                    f"--data-contract {contract} --prepped-data ${{{{outputs.prepped_data}}}}")
    assert train_spec["command"] == "python train_diabetes.py --training-data ${{inputs.prepped_data}}"
    assert prep_spec["code"] == train_spec["code"] == "<repo>/step_scripts"
    # the DataPath parameter: a pipeline input, mounted read-only into prep; the fingerprint: a string input
    assert spec["inputs"] == {"input_data": {"type": "uri_file"},
                              "input_data_version": {"type": "string", "default": "unversioned"}}
    assert prep["inputs"]["input_data_version"]["value"] == "${{parent.inputs.input_data_version}}"
    assert prep["inputs"]["input_data"]["value"] == "${{parent.inputs.input_data}}"
    assert prep_spec["inputs"]["input_data"] == {"type": "uri_file", "mode": "ro_mount"}
    # the PipelineData: prep's output, train's input
    assert prep_spec["outputs"] == {"prepped_data": {"type": "uri_folder"}}
    assert train["inputs"]["prepped_data"]["value"] == "${{parent.jobs.prep.outputs.prepped_data}}"
    # allow_reuse and the environment
    assert prep_spec["is_deterministic"] is True and train_spec["is_deterministic"] is True
    assert "scikit-learn==1.9.1" in prep_spec["environment"]["conda_file"]["dependencies"][-1]["pip"]


def test_the_job_binds_the_data_path_on_the_datastore_with_tags_in_the_request(lab):
    job = lab["job"]
    properties = job["properties"]

    assert job["name"] == "retrainer-0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c"
    assert properties["componentId"] == f"azureml:diabetes_training:{VERSION}"
    assert properties["inputs"] == {
        "input_data": {"jobInputType": "uri_file", "uri": "azureml://datastores/training_data/paths/2026/diabetes.csv"},
        "input_data_version": {"jobInputType": "literal", "value": FINGERPRINT}}
    assert properties["tags"]["retrainer.key_sha"] == "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c"
    assert properties["experimentName"] == "diabetes-retraining"
    assert properties["settings"]["default_compute"] == "cpu-cluster"


def test_every_parameter_becomes_a_typed_pipeline_input_and_a_folder_binds_as_uri_folder():
    """The fixture's parameters: a DataPath and two strings, none of them the lab's."""
    translated = translate(fixture_pipeline.build(environment="fixture-env"), VERSION)
    spec = rest_json(translated)["properties"]["componentSpec"]

    assert spec["inputs"] == {"barrier": {"type": "string", "default": ""}, "input_data": {"type": "uri_file"},
                              "tag": {"type": "string", "default": "t1"}}
    split = spec["jobs"]["split"]
    assert split["inputs"]["tag"]["value"] == "${{parent.inputs.tag}}"
    assert split["componentId"]["properties"]["componentSpec"]["command"].endswith("--tag ${{inputs.tag}}")
    assert spec["jobs"]["join"]["inputs"]["left_out"]["value"] == "${{parent.jobs.left.outputs.left_out}}"
    assert translated.tags == {"retrainer.data_default.input_data":
                               f"azureml://datastores/fixture_store/paths/{fixture_pipeline.DEFAULT_INPUT}"}

    inputs = job_inputs(translated, {"input_data": "dataset", "tag": "t2"}, lambda path: "uri_folder")
    assert inputs["input_data"].type == "uri_folder"
    assert inputs["input_data"].path == "azureml://datastores/fixture_store/paths/dataset"
    assert inputs["tag"] == "t2" and "barrier" not in inputs    # left to the component's default

    defaults = job_inputs(translated, {}, lambda path: pytest.fail("only a given path is looked at"))
    assert defaults["input_data"].type == "uri_file"
    assert defaults["input_data"].path == f"azureml://datastores/fixture_store/paths/{fixture_pipeline.DEFAULT_INPUT}"


def test_a_parameter_the_pipeline_does_not_declare_is_refused_by_name():
    translated = translate(fixture_pipeline.build(environment="fixture-env"), VERSION)

    with pytest.raises(ValueError, match="has no parameter 'input_data_version'"):
        job_inputs(translated, {"input_data": "a.csv", "input_data_version": "abc"}, path_type)   # not in the fixture


def test_a_step_without_an_environment_fails_naming_it():
    with pytest.raises(UntranslatableStepError, match="step 'split' has no environment"):
        translate(fixture_pipeline.build(), VERSION)


def test_a_run_after_without_data_fails_naming_the_steps_and_the_construct():
    from azureml.core import Environment
    from azureml.core.runconfig import RunConfiguration
    from azureml.pipeline.steps import PythonScriptStep

    runconfig = RunConfiguration()
    runconfig.environment = Environment("fixture-env")
    common = dict(script_name="split.py", source_directory=str(fixture_pipeline.STEPS_DIR), runconfig=runconfig)
    first, second = PythonScriptStep(name="first", **common), PythonScriptStep(name="second", **common)
    second.run_after(first)

    with pytest.raises(UntranslatableStepError, match=r"step 'second' runs after 'first' .*\(run_after\)"):
        translate(PipelineDefinition("ordered", (second,), {}, None), VERSION)


def test_a_step_type_without_a_v2_form_fails_before_anything_is_sent():
    from azureml.pipeline.steps import CommandStep

    step = CommandStep(name="shell", command="echo hi", source_directory=str(fixture_pipeline.STEPS_DIR))

    with pytest.raises(UntranslatableStepError, match="cannot translate to SDK v2: step 'shell' is a CommandStep"):
        translate(PipelineDefinition("shell", (step,), {}, None), VERSION)


@pytest.mark.parametrize("path, kind", [("diabetes.csv", "uri_file"), ("2026/11/data.csv", "uri_file"),
                                        ("dataset", "uri_folder"), ("dataset/", "uri_folder"), ("", "uri_folder")])
def test_path_type(path, kind):
    assert path_type(path) == kind


def test_an_intermediate_on_a_named_datastore_is_written_there_in_the_azureml_layout():
    definition = pipelines.load_definition(
        "diabetes_training", datastore=pipelines.local_datastore("training_data", "incoming"),
        compute_target="cpu-cluster",
        intermediate_datastore=pipelines.local_datastore("intermediates", "intermediates"))

    prep = rest_json(translate(definition, VERSION))["properties"]["componentSpec"]["jobs"]["prep"]

    assert prep["outputs"]["prepped_data"]["uri"] == \
        "azureml://datastores/intermediates/paths/azureml/${{name}}/${{output_name}}/"
