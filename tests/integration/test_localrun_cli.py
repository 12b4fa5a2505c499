"""`python -m retrainer run-local`: exit codes and one-line messages for bad input."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, state_dir: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RETRAINER_", "MLFLOW_"))}
    env["RETRAINER_STATE_DIR"] = str(state_dir)
    return subprocess.run([sys.executable, "-m", "retrainer", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.parametrize("args, message", [
    (["run-local", "no_such_pipeline"], "error: unknown pipeline 'no_such_pipeline'; known pipelines: "),
    (["run-local", "diabetes_training", "--param", "input_data=missing.csv"],
     "error: input_data: 'missing.csv' is not a local file or folder; give an existing path"),
    (["run-local", "diabetes_training", "--param", "learning_rate=0.1"],
     "error: unknown parameter learning_rate; this pipeline takes input_data"),
    (["run-local", "diabetes_training", "--param", "input_data"], "error: --param 'input_data' must look like NAME=VALUE"),
])
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, args, message):
    done = cli(*args, state_dir=tmp_path)

    assert done.returncode == 2
    assert done.stderr.startswith(message) and len(done.stderr.strip().splitlines()) == 1
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert not (tmp_path / "runs").exists()


def test_a_missing_pipeline_name_is_a_usage_error(tmp_path):
    done = cli("run-local", state_dir=tmp_path)

    assert done.returncode == 2
    assert "the following arguments are required: pipeline" in done.stderr


def test_a_failing_step_exits_1_and_says_which(tmp_path):
    data = tmp_path / "no_glucose.csv"
    data.write_text("Pregnancies,Age,Diabetic\n1,30,0\n")

    done = cli("run-local", "diabetes_training", "--param", f"input_data={data}", state_dir=tmp_path / "state")

    assert done.returncode == 1
    outcome = {line.split()[0]: line.split()[1] for line in done.stdout.splitlines()[1:3]}
    assert outcome == {"prep": "FAILED", "train": "not"}     # "not run"
    assert "error: step 'prep' failed with exit code 2" in done.stderr
    assert "lacks the required column(s) PlasmaGlucose" in done.stderr
    assert "Traceback" not in done.stderr
