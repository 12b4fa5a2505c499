"""The benchmark pipeline's one step: count the data rows of the input (a CSV file or a folder of them).

    python count_rows.py --input-data PATH
"""
import argparse
import sys
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("--input-data", type=Path, required=True)
parser.add_argument("--input-data-version", default="unversioned")   # only its value matters: step reuse
path = parser.parse_args().input_data
files = sorted(path.glob("*.csv")) if path.is_dir() else [path]
if not files or not all(f.is_file() for f in files):
    sys.exit(f"count_rows: no CSV file at {path}")
rows = sum(max(sum(1 for _ in f.open(encoding="utf-8")) - 1, 0) for f in files)
print(f"{rows} rows in {len(files)} file(s)")
