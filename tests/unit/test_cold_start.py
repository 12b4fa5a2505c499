"""A cold start pays only for what it uses: importing the app, or handling an event that is filtered
out, loads none of the heavy SDKs."""
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("azureml", "azure.ai.ml", "mlflow", "sklearn", "pandas")
REPORT_HEAVY = (f"import json, sys; print(json.dumps(sorted({{h for h in {list(HEAVY)!r} for m in sys.modules "
                f"if m == h or m.startswith(h + '.')}})))")


def heavy_modules_after(code: str) -> list[str]:
    env = {"PATH": "/usr/bin:/bin", "AzureWebJobsStorage": "UseDevelopmentStorage=true",
           "RETRAINER_DATA_STORAGE": "UseDevelopmentStorage=true"}
    out = subprocess.run([sys.executable, "-c", f"{code}\n{REPORT_HEAVY}"], cwd=REPO, env=env, check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.splitlines()[-1])


def test_importing_the_function_app_loads_no_heavy_sdk():
    assert heavy_modules_after("import function_app") == []


OUT = """
class Out(func.Out[str]):
    value = None
    def set(self, val): self.value = val
    def get(self): return self.value
"""


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
{OUT}
[ml_events] = [f for f in function_app.app.get_functions() if f.get_function_name() == "ml_events"]
ml_events.get_user_function()(func.EventGridEvent(**{event!r}), Out())
"""
    assert heavy_modules_after(code) == []


def test_queuing_a_landed_file_loads_none_of_them():
    """The webhook only parses, filters and enqueues: Event Grid's 30 s answer window needs no SDK."""
    event = {"id": "e1", "topic": "/subscriptions/s/resourceGroups/r/providers/Microsoft.Storage/storageAccounts/d",
             "subject": "/blobServices/default/containers/incoming/blobs/a.csv",
             "event_type": "Microsoft.Storage.BlobCreated", "event_time": None, "data_version": "",
             "data": {"api": "PutBlockList", "eTag": "0x1", "contentLength": 10, "blobType": "BlockBlob",
                      "url": "https://d.blob.core.windows.net/incoming/a.csv", "sequencer": "1"}}
    code = f"""
import azure.functions as func
import function_app
{OUT}
[blob_events] = [f for f in function_app.app.get_functions() if f.get_function_name() == "blob_events"]
out = Out()
blob_events.get_user_function()(func.EventGridEvent(**{event!r}), out)
assert out.value, "the file was queued"
"""
    assert heavy_modules_after(code) == []


def test_building_the_sdk_v2_backend_loads_no_sdk_until_it_is_used():
    code = """
from retrainer import bootstrap
from retrainer.settings import Settings
bootstrap.build(Settings.from_env({"AzureWebJobsStorage": "UseDevelopmentStorage=true",
                                   "RETRAINER_DATA_STORAGE": "UseDevelopmentStorage=true",
                                   "RETRAINER_BACKEND": "azureml_v2", "RETRAINER_AML_SUBSCRIPTION_ID": "1234"}))
"""
    assert heavy_modules_after(code) == []


def test_a_v2_submission_is_built_without_the_v1_sdk():
    """The runtime package leaves azureml-pipeline-steps out: the v2 backend's run-time path must not need it."""
    code = """
from azure.ai.ml import Input
from azure.ai.ml.entities import PipelineComponent
from retrainer.adapters.azureml_v2 import job_inputs, pipeline_job
component = PipelineComponent(name="p", version="1", inputs={"input_data": Input(type="uri_file")},
                              tags={"retrainer.data_default.input_data": "azureml://datastores/d/paths/a.csv"})
inputs = job_inputs(component, {"input_data": "b.csv"}, lambda path: "uri_file")
pipeline_job("azureml:p:1", inputs, name="n", experiment="e", tags={}, compute="c")._to_rest_object()
"""
    assert heavy_modules_after(code) == ["azure.ai.ml"]
