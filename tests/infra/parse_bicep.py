"""Run by the infra tools' Python (pycep-parser lives there): prints {file: parsed template} as JSON.

A file that does not parse is reported as {"error": "..."} so the test names it."""
import json
import sys
from pathlib import Path

from pycep import BicepParser

parser = BicepParser()
parsed = {}
for name in sys.argv[1:]:
    try:
        parsed[name] = parser.parse(file_path=Path(name))
    except Exception as error:  # lark's errors carry the line and column
        parsed[name] = {"error": f"{type(error).__name__}: {error}"}
json.dump(parsed, sys.stdout)
