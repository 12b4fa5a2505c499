"""`import function_app` must not pull the heavy SDKs: a cold start pays only for what it uses."""
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("azureml", "mlflow", "sklearn", "pandas")


def test_importing_the_function_app_loads_no_heavy_sdk():
    probe = ("import json, sys, function_app; "
             f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({list(HEAVY)!r}))))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, check=True, capture_output=True, text=True)
    assert json.loads(out.stdout) == []
