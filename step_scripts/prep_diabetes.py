"""Pipeline step "prep": drop rows with missing values, scale the features, write data.csv for "train".

    python prep_diabetes.py --input-data PATH [--input-data-version FINGERPRINT] [--data-contract JSON]
                            --prepped-data DIR

PATH is a CSV file or a folder of CSV files (every usable *.csv in it, in name order, concatenated;
unusable ones are skipped and named). Logs `raw_rows`, `processed_rows` and `skipped_files` through
MLflow: on Azure ML (azureml-mlflow) and under the local runner the environment names the run to attach
to; run by hand it logs to MLflow's default local store. With --data-contract (the pipeline definition's
DATA_CONTRACT) every row is checked against it (data_contract.py, the checker the app applies to a file's
first rows). A bad input file, or a folder with no usable file, exits with status 2 and a one-line message.
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import pandas as pd

import data_contract

REQUIRED_COLUMNS = ("Pregnancies", "PlasmaGlucose", "DiastolicBloodPressure", "TricepsThickness",
                    "SerumInsulin", "BMI", "DiabetesPedigree", "Age", "Diabetic")
SCALED_COLUMNS = REQUIRED_COLUMNS[:7]  # Pregnancies..DiabetesPedigree; Age and the label stay as they are
OUTPUT_FILE = "data.csv"


class BadInput(Exception):
    """The input data cannot be used; the message says what is wrong and what to do."""


def read_csv_input(path: Path, contract: data_contract.Contract | None = None) -> tuple[pd.DataFrame, list[str]]:
    """One CSV file, or every usable *.csv in a folder concatenated in name order, and the reasons of
    the folder's files that were left out. A folder is a dataset that grows over time: one bad file in
    it (already reported as rejected when it landed) must not stop every later training."""
    if path.is_file():
        return _read_one(path, contract), []
    if not path.is_dir():
        raise BadInput(f"{path} does not exist; pass a CSV file or a folder of CSV files")
    files = sorted(path.glob("*.csv"))
    if not files:
        raise BadInput(f"{path} is a folder with no .csv file in it; pass a CSV file or a folder of them")
    frames, skipped = [], []
    for file in files:
        try:
            frames.append(_read_one(file, contract))
        except BadInput as error:
            skipped.append(str(error))
    if not frames:
        raise BadInput(f"no usable .csv file in {path}: {skipped[0]}")
    # A header-only file adds no rows; leaving it out keeps its empty (text) columns from
    # turning the numeric columns of the others into text.
    with_rows = [frame for frame in frames if not frame.empty]
    return pd.concat(with_rows or frames[:1], ignore_index=True), skipped


def _read_one(file: Path, contract: data_contract.Contract | None) -> pd.DataFrame:
    try:
        frame = pd.read_csv(file)
    except pd.errors.EmptyDataError:
        raise BadInput(f"{file} is empty; it needs a header row and data rows") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        reason = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        raise BadInput(f"{file} is not a readable CSV file ({reason})") from None
    missing = [column for column in REQUIRED_COLUMNS if column not in frame.columns]
    if missing:
        raise BadInput(f"{file} lacks the required column(s) {', '.join(missing)}; "
                       f"expected {', '.join(REQUIRED_COLUMNS)}")
    if contract:
        with open(file, newline="", encoding="utf-8-sig") as rows:
            reader = csv.reader(rows)
            broken = data_contract.violation(contract, next(reader, []), reader)
        if broken:
            raise BadInput(f"{file} {broken}; fix the data or check it is the right file")
    not_numeric = [column for column in REQUIRED_COLUMNS if not pd.api.types.is_numeric_dtype(frame[column])]
    if not_numeric and not frame.empty:
        raise BadInput(f"{file} has non-numeric values in column(s) {', '.join(not_numeric)}; "
                       "fix or remove those rows")
    return frame


def prepare(raw: pd.DataFrame) -> pd.DataFrame:
    """Drop rows with any missing value, then min-max scale the seven measurement columns."""
    if raw.empty:
        raise BadInput("the input has a header but no data rows")
    prepped = raw.dropna()
    if prepped.empty:
        raise BadInput(f"all {len(raw)} rows have a missing value; nothing is left to train on")
    from sklearn.preprocessing import MinMaxScaler

    prepped = prepped.copy()
    prepped[list(SCALED_COLUMNS)] = MinMaxScaler().fit_transform(prepped[list(SCALED_COLUMNS)])
    return prepped


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    """Arrow's C++ CSV writer: ten times faster than DataFrame.to_csv on millions of rows."""
    import pyarrow
    import pyarrow.csv

    pyarrow.csv.write_csv(pyarrow.Table.from_pandas(frame, preserve_index=False), path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input-data", type=Path, required=True, help="a CSV file or a folder of CSV files")
    parser.add_argument("--input-data-version", default="unversioned",
                        help="the data's fingerprint: it changes the step's arguments, so Azure ML reruns the "
                             "step when the data behind the same path changed")
    parser.add_argument("--data-contract", type=data_contract.parse, default=None,
                        help="the pipeline's data contract (JSON): every row is checked against it")
    parser.add_argument("--prepped-data", type=Path, required=True, help="folder to write data.csv into")
    args = parser.parse_args(argv)

    try:
        raw, skipped = read_csv_input(args.input_data, args.data_contract)
        prepped = prepare(raw)
    except BadInput as error:
        print(f"prep: error: {error}", file=sys.stderr)
        return 2

    args.prepped_data.mkdir(parents=True, exist_ok=True)
    output = args.prepped_data / OUTPUT_FILE
    write_csv(prepped, output)

    import mlflow  # after validation: a bad file fails fast, without MLflow's import time

    with mlflow.start_run():
        mlflow.log_metrics({"raw_rows": len(raw), "processed_rows": len(prepped), "skipped_files": len(skipped)})
    for reason in skipped:
        print(f"prep: skipped: {reason}")
    print(f"prep: {len(raw)} rows read, {len(raw) - len(prepped)} with missing values dropped, "
          f"{len(prepped)} written to {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
