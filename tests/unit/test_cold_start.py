"""A cold start pays only for what it uses: importing the app, or handling an event that is filtered
out, loads none of the heavy SDKs."""
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("azureml", "mlflow", "sklearn", "pandas")
REPORT_HEAVY = (f"import json, sys; print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} "
                f"& set({list(HEAVY)!r}))))")


def heavy_modules_after(code: str) -> list[str]:
    env = {"PATH": "/usr/bin:/bin", "AzureWebJobsStorage": "UseDevelopmentStorage=true",
           "RETRAINER_DATA_STORAGE": "UseDevelopmentStorage=true"}
    out = subprocess.run([sys.executable, "-c", f"{code}\n{REPORT_HEAVY}"], cwd=REPO, env=env, check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.splitlines()[-1])


def test_importing_the_function_app_loads_no_heavy_sdk():
    assert heavy_modules_after("import function_app") == []


def test_an_event_from_a_foreign_workspace_is_ignored_without_loading_them():
    event = {"id": "e1", "topic": "/subscriptions/other/resourceGroups/rg/providers/"
                                  "Microsoft.MachineLearningServices/workspaces/theirs",
             "subject": "experiments/x/runs/r1", "event_type": "Microsoft.MachineLearningServices.RunCompleted",
             "event_time": None, "data_version": "2",
             "data": {"experimentId": "x", "experimentName": "e", "runId": "r1", "runType": "azureml.PipelineRun",
                      "runTags": {"retrainer.app": "retrainer", "retrainer.key": "blob:incoming/a.csv@0x1"},
                      "runProperties": {}}}
    code = f"""
import azure.functions as func
import function_app
[ml_events] = [f for f in function_app.app.get_functions() if f.get_function_name() == "ml_events"]
ml_events.get_user_function()(func.EventGridEvent(**{event!r}))
"""
    assert heavy_modules_after(code) == []
