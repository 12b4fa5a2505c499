"""The sample-data generator: the lab's schema, deterministic by seed, exact row counts, usable data."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from retrainer import sample_data

REPO = Path(__file__).resolve().parents[2]
LAB_COLUMNS = ["PatientID", "Pregnancies", "PlasmaGlucose", "DiastolicBloodPressure", "TricepsThickness",
               "SerumInsulin", "BMI", "DiabetesPedigree", "Age", "Diabetic"]


@pytest.fixture(scope="module")
def patients(tmp_path_factory) -> pd.DataFrame:
    return pd.read_csv(sample_data.write_csv(tmp_path_factory.mktemp("gen") / "p.csv", rows=20_000, seed=7))


def test_writes_the_lab_schema_header(tmp_path):
    path = sample_data.write_csv(tmp_path / "p.csv", rows=3)
    assert path.read_text().splitlines()[0] == ",".join(LAB_COLUMNS)


def test_same_seed_gives_the_same_bytes_and_another_seed_differs(tmp_path):
    first = sample_data.write_csv(tmp_path / "a.csv", rows=2_000, seed=5).read_bytes()
    again = sample_data.write_csv(tmp_path / "b.csv", rows=2_000, seed=5).read_bytes()
    other = sample_data.write_csv(tmp_path / "c.csv", rows=2_000, seed=6).read_bytes()
    assert first == again
    assert first != other


@pytest.mark.parametrize("rows", [0, 1, sample_data._CHUNK_ROWS + 3])  # includes a chunk boundary
def test_writes_exactly_the_rows_asked_for(tmp_path, rows):
    frame = pd.read_csv(sample_data.write_csv(tmp_path / "p.csv", rows=rows))
    assert list(frame.columns) == LAB_COLUMNS
    assert len(frame) == rows


def test_values_are_in_the_lab_files_ranges(patients):
    complete = patients.dropna()
    ranges = {"Pregnancies": (0, 14), "PlasmaGlucose": (44, 192), "DiastolicBloodPressure": (24, 117),
              "TricepsThickness": (7, 92), "SerumInsulin": (14, 796), "BMI": (18, 56.03),
              "DiabetesPedigree": (0.078, 2.3), "Age": (21, 77), "PatientID": (1_000_000, 9_999_999)}
    for column, (low, high) in ranges.items():
        assert complete[column].between(low, high).all(), column
    for column in ("PatientID", "Pregnancies", "PlasmaGlucose", "Age", "Diabetic"):
        assert (complete[column] % 1 == 0).all(), column
    assert set(patients["Diabetic"]) == {0, 1}
    assert 0.2 < patients["Diabetic"].mean() < 0.45


def test_a_small_fraction_of_rows_lack_one_feature_value(patients):
    incomplete = patients.isna().any(axis=1)
    assert 0.002 < incomplete.mean() < 0.03
    assert patients.loc[incomplete].isna().sum(axis=1).eq(1).all()
    assert patients[["PatientID", "Diabetic"]].notna().all().all()


def test_the_label_follows_the_risk_factors(patients):
    """Diabetic patients have higher glucose, BMI and age on average, as in the lab's data."""
    means = patients.groupby("Diabetic")[["PlasmaGlucose", "BMI", "Age", "DiabetesPedigree"]].mean()
    assert (means.loc[1] > means.loc[0]).all()


def test_the_committed_sample_is_the_generators_seed_0_output(tmp_path):
    committed = REPO / "data" / "diabetes_sample.csv"
    assert committed.stat().st_size < 1_000_000
    rows = sum(1 for _ in committed.open()) - 1
    assert sample_data.write_csv(tmp_path / "s.csv", rows=rows, seed=0).read_bytes() == committed.read_bytes()


def test_cli_writes_the_file_and_rejects_a_negative_row_count(tmp_path):
    cli = [sys.executable, "-m", "retrainer.sample_data"]
    ok = subprocess.run([*cli, str(tmp_path / "out" / "p.csv"), "--rows", "10", "--seed", "3"],
                        cwd=REPO, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert len(pd.read_csv(tmp_path / "out" / "p.csv")) == 10
    bad = subprocess.run([*cli, str(tmp_path / "q.csv"), "--rows", "-1"], cwd=REPO, capture_output=True, text=True)
    assert bad.returncode == 2
    assert "--rows" in bad.stderr and "Traceback" not in bad.stderr


def test_importing_the_module_does_not_import_numpy():
    probe = "import sys, retrainer.sample_data; print('numpy' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr
