"""The step scripts run as real subprocesses, log to MLflow on SQLite, and refuse bad input cleanly."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import joblib
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "step_scripts"
SAMPLE = REPO / "data" / "diabetes_sample.csv"
FEATURES = ["Pregnancies", "PlasmaGlucose", "DiastolicBloodPressure", "TricepsThickness", "SerumInsulin",
            "BMI", "DiabetesPedigree", "Age"]
SCALED = FEATURES[:7]


def run_script(script: str, *args: str, cwd: Path, mlflow_env: dict[str, str] | None = None):
    """Run a step script the way a runner does: its own process and working directory."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    env.update(mlflow_env or {})
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.run([sys.executable, str(SCRIPTS / script), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


class Tracking:
    """An MLflow store on SQLite in a temporary folder, with runs created up front as a runner does."""

    def __init__(self, root: Path):
        self.uri = f"sqlite:///{root / 'mlflow.db'}"
        self.client = MlflowClient(self.uri)
        self.experiment_id = self.client.create_experiment("steps", artifact_location=(root / "artifacts").as_uri())

    def new_run_env(self) -> dict[str, str]:
        run = self.client.create_run(self.experiment_id)
        return {"MLFLOW_TRACKING_URI": self.uri, "MLFLOW_RUN_ID": run.info.run_id}

    def metrics(self, env: dict[str, str]) -> dict[str, float]:
        return self.client.get_run(env["MLFLOW_RUN_ID"]).data.metrics


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """prep then train on the committed sample, each attached to its own pre-created MLflow run."""
    root = tmp_path_factory.mktemp("steps")
    tracking = Tracking(root)
    prep_env, train_env = tracking.new_run_env(), tracking.new_run_env()
    prepped = root / "pipeline_data" / "prepped_data"  # does not exist yet: prep creates it
    prep = run_script("prep_diabetes.py", "--input-data", str(SAMPLE), "--prepped-data", str(prepped),
                      cwd=root / "prep", mlflow_env=prep_env)
    assert prep.returncode == 0, prep.stderr
    train = run_script("train_diabetes.py", "--training-data", str(prepped), cwd=root / "train",
                       mlflow_env=train_env)
    assert train.returncode == 0, train.stderr
    return {"tracking": tracking, "prep_env": prep_env, "train_env": train_env, "prepped": prepped,
            "root": root, "prep": prep, "train": train}


def test_prep_logs_row_counts_and_drops_rows_with_missing_values(pipeline):
    sample = pd.read_csv(SAMPLE)
    metrics = pipeline["tracking"].metrics(pipeline["prep_env"])
    assert metrics["raw_rows"] == len(sample)
    assert metrics["processed_rows"] == len(sample.dropna())
    assert metrics["processed_rows"] < metrics["raw_rows"]  # the sample does have incomplete rows


def test_prep_scales_the_seven_measurements_and_leaves_age_and_label_alone(pipeline):
    sample = pd.read_csv(SAMPLE).dropna().reset_index(drop=True)
    prepped = pd.read_csv(pipeline["prepped"] / "data.csv")
    assert len(prepped) == len(sample)
    assert prepped[SCALED].min().tolist() == pytest.approx([0.0] * 7)
    assert prepped[SCALED].max().tolist() == pytest.approx([1.0] * 7)
    assert prepped["Age"].tolist() == sample["Age"].tolist()
    assert prepped["Diabetic"].tolist() == sample["Diabetic"].tolist()


def test_train_logs_accuracy_and_an_auc_of_at_least_0_85(pipeline):
    metrics = pipeline["tracking"].metrics(pipeline["train_env"])
    assert metrics["AUC"] >= 0.85
    assert 0.5 < metrics["Accuracy"] <= 1


def test_train_logs_a_roc_curve_image(pipeline):
    tracking, run_id = pipeline["tracking"], pipeline["train_env"]["MLFLOW_RUN_ID"]
    assert "roc_curve.png" in [artifact.path for artifact in tracking.client.list_artifacts(run_id)]
    image = Path(tracking.client.download_artifacts(run_id, "roc_curve.png", str(pipeline["root"])))
    assert image.read_bytes().startswith(b"\x89PNG")


def test_the_attached_runs_end_finished(pipeline):
    client = pipeline["tracking"].client
    for env in (pipeline["prep_env"], pipeline["train_env"]):
        assert client.get_run(env["MLFLOW_RUN_ID"]).info.status == "FINISHED"


def test_train_saves_a_model_that_loads_and_predicts(pipeline):
    model = joblib.load(pipeline["root"] / "train" / "outputs" / "diabetes_model.pkl")
    rows = pd.read_csv(pipeline["prepped"] / "data.csv")[FEATURES].head(50).to_numpy()
    predictions = model.predict(rows)
    assert len(predictions) == 50 and set(predictions) <= {0, 1}
    assert model.predict_proba(rows).shape == (50, 2)


def test_scripts_print_a_short_summary(pipeline):
    sample = pd.read_csv(SAMPLE)
    assert f"{len(sample)} rows read" in pipeline["prep"].stdout
    assert f"{len(sample.dropna())} written to" in pipeline["prep"].stdout
    assert "AUC" in pipeline["train"].stdout and "diabetes_model.pkl" in pipeline["train"].stdout


def test_prep_run_by_hand_reads_a_folder_of_csv_files_and_logs_locally(tmp_path):
    sample = pd.read_csv(SAMPLE)
    folder = tmp_path / "incoming"
    folder.mkdir()
    sample.iloc[:300].to_csv(folder / "part-1.csv", index=False)
    sample.iloc[300:500].to_csv(folder / "part-2.csv", index=False)
    sample.iloc[:0].to_csv(folder / "part-3.csv", index=False)  # header only: adds nothing
    (folder / "notes.txt").write_text("not data")
    (folder / "part-4.csv").write_text("respondent,answer\n1,yes\n")   # rejected when it landed: skipped

    result = run_script("prep_diabetes.py", "--input-data", str(folder), "--prepped-data", "out",
                        cwd=tmp_path / "work")  # no MLflow variables: MLflow's default local store

    assert result.returncode == 0, result.stderr
    assert len(pd.read_csv(tmp_path / "work" / "out" / "data.csv")) == len(sample.iloc[:500].dropna())
    client = MlflowClient(f"sqlite:///{tmp_path / 'work' / 'mlflow.db'}")
    [run] = client.search_runs([experiment.experiment_id for experiment in client.search_experiments()])
    assert run.data.metrics["raw_rows"] == 500
    assert run.data.metrics["processed_rows"] == len(sample.iloc[:500].dropna())
    assert run.data.metrics["skipped_files"] == 1
    assert "skipped" in result.stdout and "part-4.csv" in result.stdout


def test_prep_fails_when_no_file_of_a_folder_is_usable(tmp_path, without_glucose):
    folder = tmp_path / "dataset"
    folder.mkdir()
    without_glucose.rename(folder / "no_glucose.csv")
    result = run_script("prep_diabetes.py", "--input-data", str(folder), "--prepped-data", "out",
                        cwd=tmp_path / "work")
    assert_one_line_error(result, "no usable .csv file", "PlasmaGlucose")


def assert_one_line_error(result, *words: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0]


@pytest.fixture
def without_glucose(tmp_path) -> Path:
    path = tmp_path / "no_glucose.csv"
    pd.read_csv(SAMPLE, nrows=20).drop(columns="PlasmaGlucose").to_csv(path, index=False)
    return path


def test_prep_rejects_a_file_missing_a_required_column(tmp_path, without_glucose):
    result = run_script("prep_diabetes.py", "--input-data", str(without_glucose), "--prepped-data", "out",
                        cwd=tmp_path / "work")
    assert_one_line_error(result, "PlasmaGlucose", "no_glucose.csv")
    assert not (tmp_path / "work" / "out" / "data.csv").exists()


def test_train_rejects_data_missing_a_required_column(tmp_path, without_glucose):
    result = run_script("train_diabetes.py", "--training-data", str(without_glucose), cwd=tmp_path / "work")
    assert_one_line_error(result, "PlasmaGlucose")
    assert not (tmp_path / "work" / "outputs").exists()


@pytest.mark.parametrize("content, words", [
    ("", ["empty"]),
    (",".join(FEATURES + ["Diabetic"]) + "\n", ["no data rows"]),
    (",".join(FEATURES + ["Diabetic"]) + "\n" + ",".join(["1"] * 7 + ["", "0"]) + "\n", ["missing value"]),
    (",".join(FEATURES + ["Diabetic"]) + "\n" + ",".join(["abc"] + ["1"] * 8) + "\n", ["non-numeric", "Pregnancies"]),
], ids=["empty file", "header only", "every row incomplete", "text in a number column"])
def test_prep_rejects_files_with_no_usable_rows(tmp_path, content, words):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    result = run_script("prep_diabetes.py", "--input-data", str(path), "--prepped-data", "out", cwd=tmp_path)
    assert_one_line_error(result, *words)


def test_prep_rejects_a_missing_path_and_a_folder_without_csv(tmp_path):
    missing = run_script("prep_diabetes.py", "--input-data", "nope.csv", "--prepped-data", "out", cwd=tmp_path)
    assert_one_line_error(missing, "nope.csv", "does not exist")
    (tmp_path / "empty_folder").mkdir()
    no_csv = run_script("prep_diabetes.py", "--input-data", "empty_folder", "--prepped-data", "out", cwd=tmp_path)
    assert_one_line_error(no_csv, "empty_folder", "no .csv")


def test_train_rejects_a_file_with_no_rows(tmp_path):
    path = tmp_path / "header_only.csv"
    path.write_text(",".join(FEATURES + ["Diabetic"]) + "\n")
    result = run_script("train_diabetes.py", "--training-data", str(path), cwd=tmp_path)
    assert_one_line_error(result, "no data rows")


def test_train_rejects_a_label_with_one_class(tmp_path):
    path = tmp_path / "one_class.csv"
    pd.read_csv(SAMPLE, nrows=100).dropna().assign(Diabetic=0).to_csv(path, index=False)
    result = run_script("train_diabetes.py", "--training-data", str(path), cwd=tmp_path)
    assert_one_line_error(result, "Diabetic", "both")


@pytest.mark.parametrize("row, says", [
    ("9999999,2,95,70,30,80,31.5,0.5,40,7", "row 10002, column Diabetic: 7 is not an allowed value"),
    ("9999999,2,lots,70,30,80,31.5,0.5,40,1", "row 10002, column PlasmaGlucose: 'lots' is not a number"),
])
def test_prep_applies_the_data_contract_to_every_row(tmp_path, row, says):
    """The app checks a file's first 64 KiB; a bad row past them is caught by prep, with the same rule."""
    import json

    from pipeline_defs.diabetes_training import DATA_CONTRACT

    data = tmp_path / "late.csv"
    data.write_text(SAMPLE.read_text() + row + "\n")
    contract = json.dumps(DATA_CONTRACT)
    bad = run_script("prep_diabetes.py", "--input-data", str(data), "--data-contract", contract,
                     "--prepped-data", str(tmp_path / "out"), cwd=tmp_path / "prep")
    good = run_script("prep_diabetes.py", "--input-data", str(SAMPLE), "--data-contract", contract,
                      "--prepped-data", str(tmp_path / "out"), cwd=tmp_path / "prep-good",
                      mlflow_env=Tracking(tmp_path).new_run_env())

    assert bad.returncode == 2 and says in bad.stderr and bad.stderr.count("\n") == 1
    assert good.returncode == 0, good.stderr
