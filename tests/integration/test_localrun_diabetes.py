"""The lab pipeline end to end on this machine: the issue's "Done when" for reuse."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from retrainer.localrun import run_pipeline
from retrainer.pipelines import PipelineDefinition, local_datastore

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "data" / "diabetes_sample.csv"


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory) -> Path:
    """An initialised MLflow database, copied into each test's state folder (the schema takes seconds)."""
    path = tmp_path_factory.mktemp("store") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def state(tmp_path, empty_store) -> Path:
    folder = tmp_path / "state"
    folder.mkdir()
    shutil.copy(empty_store, folder / "mlflow.db")
    return folder


def run_local_json(data: Path, state_dir: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RETRAINER_", "MLFLOW_"))}
    env["RETRAINER_STATE_DIR"] = str(state_dir)
    done = subprocess.run([sys.executable, "-m", "retrainer", "run-local", "diabetes_training",
                           "--param", f"input_data={data}", "--json"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_cli_run_twice_on_one_file_executes_no_step_the_second_time(tmp_path, state):
    data = tmp_path / "diabetes.csv"
    shutil.copy(SAMPLE, data)

    first = run_local_json(data, state)
    second = run_local_json(data, state)

    assert first["status"] == second["status"] == "Completed"
    assert [(s["name"], s["reused"]) for s in first["steps"]] == [("prep", False), ("train", False)]
    assert [(s["name"], s["reused"]) for s in second["steps"]] == [("prep", True), ("train", True)]
    assert not (state / "runs" / second["run_id"] / "steps" / "train").exists()   # no snapshot: nothing ran
    assert second["metrics"] == first["metrics"]
    assert first["metrics"]["AUC"] >= 0.85
    assert set(first["metrics"]) >= {"raw_rows", "processed_rows", "Accuracy", "AUC"}

    from retrainer.localrun.store import read_run

    info = read_run(f"sqlite:///{state / 'mlflow.db'}", second["run_id"])
    artifacts = {a.path for a in MlflowClient(f"sqlite:///{state / 'mlflow.db'}").list_artifacts(
        info.step("train").run_id, "outputs")}
    assert "outputs/diabetes_model.pkl" in artifacts      # a model can be registered from the reused step


@pytest.fixture
def scripts_copy(tmp_path) -> Path:
    target = tmp_path / "step_scripts"
    shutil.copytree(ROOT / "step_scripts", target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def run(source: Path, data: Path, state: Path):
    from pipeline_defs import diabetes_training

    steps, parameters = diabetes_training.build(local_datastore("training_data", "incoming"), "cpu-cluster",
                                                source_directory=source)
    definition = PipelineDefinition("diabetes_training", tuple(steps), parameters, source / "environment.yml")
    result = run_pipeline(definition, parameters={"input_data": str(data)}, state_dir=state,
                          tracking_uri=f"sqlite:///{state / 'mlflow.db'}", experiment="done-when")
    assert result.status == "Completed", result.error
    return {s.name: s.reused for s in result.steps}


def test_only_steps_whose_inputs_changed_rerun(tmp_path, scripts_copy, state):
    data = tmp_path / "diabetes.csv"
    lines = SAMPLE.read_text().splitlines(keepends=True)
    data.write_text("".join(lines[:3001]))
    run(scripts_copy, data, state)

    train = scripts_copy / "train_diabetes.py"
    train.write_text(train.read_text() + "\n# a comment is an edit too\n")
    assert run(scripts_copy, data, state) == {"prep": True, "train": False}

    data.write_text("".join(lines[:1]) + "".join(lines[3001:6001]))      # same path, other rows
    assert run(scripts_copy, data, state) == {"prep": False, "train": False}
