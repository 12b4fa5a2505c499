"""Synthetic patients in the schema of the Azure ML lab's diabetes.csv, streamed to disk in chunks.

The label follows a logistic model over glucose, BMI, age, pregnancies, pedigree and blood pressure,
plus noise, so a model can learn it well (AUC about 0.9 for a pruned decision tree, 0.95 for a logistic regression) but not perfectly. About 1% of rows have one
empty feature field, so the prep step's drop of missing rows has something to do.

The committed sample was made with:
    .venv/bin/python -m retrainer.sample_data data/diabetes_sample.csv --rows 10000 --seed 0
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

COLUMNS = ("PatientID", "Pregnancies", "PlasmaGlucose", "DiastolicBloodPressure", "TricepsThickness",
           "SerumInsulin", "BMI", "DiabetesPedigree", "Age", "Diabetic")
# Fixed, so a seed gives the same file whatever the machine; big enough to amortise numpy's overhead,
# small enough to keep memory bounded (a few tens of MB per chunk).
_CHUNK_ROWS = 200_000
_MISSING_FRACTION = 0.01
# Decimal places written for the float columns; every other column is an integer.
_DECIMALS = {"BMI": 2, "DiabetesPedigree": 6}


def write_csv(path: str | Path, rows: int, seed: int = 0) -> Path:
    """Write `rows` synthetic patients (plus a header) to `path`; the same seed gives the same bytes."""
    import numpy as np

    if rows < 0:
        raise ValueError(f"rows must be 0 or more, got {rows}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    with path.open("wb") as out:
        out.write((",".join(COLUMNS) + "\n").encode())
        for start in range(0, rows, _CHUNK_ROWS):
            out.write(_csv_bytes(_patients(rng, min(_CHUNK_ROWS, rows - start))))
    return path


def _patients(rng, n: int) -> dict:
    """One chunk of patients as columns; missing feature values are NaN."""
    import numpy as np

    age = np.minimum(21 + np.floor(rng.gamma(1.3, 9.0, n)), 77)
    pregnancies = np.minimum(rng.poisson(0.7 + (age - 21) * 0.06 + rng.exponential(1.6, n)), 14.0)
    glucose = np.clip(np.rint(rng.normal(108, 28, n)), 44, 192)
    pressure = np.clip(np.rint(rng.normal(72, 15, n)), 24, 117)
    triceps = np.clip(np.rint(rng.normal(28, 13, n)), 7, 92)
    insulin = np.clip(np.rint(rng.lognormal(4.4, 0.75, n)), 14, 796)
    bmi = np.clip(rng.normal(31.5, 9.0, n), 18, 56.03)
    pedigree = np.clip(rng.lognormal(-1.2, 0.65, n), 0.078, 2.3)

    logit = (-3.0
             + 0.11 * (glucose - 108)
             + 0.22 * (bmi - 31.5)
             + 0.15 * (age - 30)
             + 0.6 * (pregnancies - 3)
             + 3.2 * (np.log(pedigree) + 1.2)
             + 0.024 * (pressure - 72)
             + rng.normal(0, 1.0, n))
    diabetic = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)

    features = {"Pregnancies": pregnancies, "PlasmaGlucose": glucose, "DiastolicBloodPressure": pressure,
                "TricepsThickness": triceps, "SerumInsulin": insulin, "BMI": bmi,
                "DiabetesPedigree": pedigree, "Age": age}
    # Blank one feature field in a small fraction of rows.
    blank_rows = np.flatnonzero(rng.random(n) < _MISSING_FRACTION)
    blank_cols = rng.integers(0, len(features), blank_rows.size)
    for i, values in enumerate(features.values()):
        values[blank_rows[blank_cols == i]] = np.nan

    return {"PatientID": rng.integers(1_000_000, 10_000_000, n), **features, "Diabetic": diabetic}


def _csv_bytes(columns: dict) -> bytes:
    """Format columns as CSV rows without a per-row Python loop.

    Each field becomes a NUL-padded fixed-width byte string; the fields and separators are laid out
    side by side in one byte matrix, and dropping the NUL padding leaves the CSV text.
    """
    import numpy as np

    fields = []
    for name in COLUMNS:
        fields.append(_field_bytes(columns[name], _DECIMALS.get(name, 0)))
        fields.append(np.full((len(columns[name]), 1), ord(","), dtype=np.uint8))
    fields[-1] = np.full_like(fields[-1], ord("\n"))
    matrix = np.hstack(fields)
    return matrix[matrix != 0].tobytes()


def _field_bytes(values, decimals: int):
    """Values (all >= 0) as a (rows, width) uint8 matrix of ASCII, NUL-padded; NaN becomes empty."""
    import numpy as np

    missing = np.isnan(values) if values.dtype.kind == "f" else np.zeros(len(values), dtype=bool)
    scaled = np.rint(np.where(missing, 0, values) * 10**decimals).astype(np.int64)
    whole = scaled // 10**decimals
    text = _digits(whole, width=len(str(int(whole.max(initial=0)))), leading_zeros=False)
    if decimals:
        point = np.full((len(values), 1), ord("."), dtype=np.uint8)
        text = np.hstack([text, point, _digits(scaled % 10**decimals, decimals, leading_zeros=True)])
    text[missing] = 0
    return text


def _digits(numbers, width: int, leading_zeros: bool):
    """Non-negative integers as a (rows, width) uint8 matrix of ASCII digits, right-aligned.

    Digit arithmetic over whole columns: numpy's int-to-bytes conversion is ten times slower.
    """
    import numpy as np

    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    digits = (numbers[:, None] // powers % 10 + ord("0")).astype(np.uint8)
    if not leading_zeros:
        padding = numbers[:, None] < powers
        padding[:, -1] = False  # zero itself is written as "0"
        digits[padding] = 0
    return digits


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m retrainer.sample_data",
                                     description="Write synthetic diabetes patients as CSV.")
    parser.add_argument("out", type=Path, help="the CSV file to write")
    parser.add_argument("--rows", type=int, required=True, help="number of patients")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same file)")
    args = parser.parse_args(argv)
    if args.rows < 0:
        parser.error(f"--rows must be 0 or more, got {args.rows}")
    try:
        path = write_csv(args.out, args.rows, args.seed)
    except OSError as error:
        print(f"error: cannot write {args.out}: {error.strerror}", file=sys.stderr)
        return 2
    print(f"wrote {args.rows} rows to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
