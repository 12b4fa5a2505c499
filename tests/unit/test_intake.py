"""The webhooks' half of the intake: which deliveries become queue work, and the webhook functions themselves
called with the inputs the Python worker builds (func.EventGridEvent, func.CloudEvent, func.QueueMessage)."""
import json
from datetime import datetime, timezone

import azure.functions as func
import pytest

from retrainer import bootstrap, intake, policy
from retrainer.events import parse_event
from retrainer.settings import Settings

SETTINGS = Settings(aml_subscription_id="sub-1", aml_resource_group="rg", aml_workspace="ws")
WORKSPACE = SETTINGS.workspace_topic
STORAGE = "/subscriptions/sub-1/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/data"
KEY = "blob:incoming/a.csv@0x1"


def blob_created(name="2026/a.csv", api="PutBlob", size=100, container="incoming", **extra):
    return {"id": f"e-{api}-{size}", "topic": STORAGE, "subject": f"/blobServices/default/containers/{container}/blobs/{name}",
            "eventType": "Microsoft.Storage.BlobCreated", "eventTime": "2026-11-30T02:00:00Z", "dataVersion": "",
            "data": {"api": api, "eTag": "0x8DC1", "contentLength": size, "blobType": "BlockBlob",
                     "url": f"https://data.blob.core.windows.net/{container}/{name}", "sequencer": "01", **extra}}


def run_event(status=None, tags=None, topic=WORKSPACE, run_type="azureml.PipelineRun"):
    event_type = "Microsoft.MachineLearningServices." + ("RunStatusChanged" if status else "RunCompleted")
    data = {"runId": "run-1", "runType": run_type, "experimentName": "exp", "experimentId": "x",
            "runTags": {policy.TAG_APP: "retrainer", policy.TAG_KEY: KEY} if tags is None else tags,
            "runProperties": {"azureml.runsource": "azureml.PipelineRun", "big": "x" * 10_000}}
    if status:
        data["runStatus"] = status
    return {"id": "r-1", "topic": topic, "subject": "experiments/x/runs/run-1", "eventType": event_type,
            "eventTime": "2026-11-30T02:00:00Z", "dataVersion": "2", "data": data}


# ---------------------------------------------------------------- blob events

def test_a_completed_file_becomes_a_small_message_naming_the_blob():
    decided = intake.blob_work(parse_event(blob_created()), SETTINGS)

    assert isinstance(decided, intake.Accepted)
    work = intake.read_blob_work(decided.message)
    assert (work.container, work.name, work.etag) == ("incoming", "2026/a.csv", "0x8DC1")
    assert len(decided.message) < 500


@pytest.mark.parametrize("event, why", [
    (blob_created(api="CreateFile", size=0), "does not complete a file"),
    (blob_created(api="SftpCreate", size=0), "does not complete a file"),
    (blob_created(api="PutBlob", size=0), "empty"),
    (blob_created(name="azureml/0123/prepped_data/data.csv"), "azureml/"),
    (blob_created(container="elsewhere"), "outside container"),
    (run_event(), "not a BlobCreated"),
])
def test_deliveries_that_cannot_start_a_training_are_ignored_with_the_reason(event, why):
    decided = intake.blob_work(parse_event(event), SETTINGS)
    assert isinstance(decided, intake.Ignored) and why in decided.reason


# ---------------------------------------------------------------- run events

@pytest.mark.parametrize("status", [None, "Completed", "Failed", "Canceled"])
def test_a_final_event_of_our_run_is_queued_without_its_properties(status):
    decided = intake.run_work(parse_event(run_event(status)), SETTINGS)

    assert isinstance(decided, intake.Accepted)
    assert "big" not in decided.message
    event = intake.read_run_work(decided.message)
    assert (event.run_id, event.run_tags[policy.TAG_KEY], event.topic) == ("run-1", KEY, WORKSPACE)
    assert event.run_status == (status or "Completed")


@pytest.mark.parametrize("event, why", [
    (run_event("Running"), "not finished"),
    (run_event("Queued"), "not finished"),
    (run_event(topic=WORKSPACE.replace("/ws", "/theirs")), "foreign topic"),
    (run_event(tags={"team": "x"}), "not submitted by retrainer"),
    (run_event(run_type="azureml.StepRun"), "pipeline step"),
    (blob_created(), "not a run event"),
])
def test_run_events_not_ours_to_finish_are_ignored_with_the_reason(event, why):
    decided = intake.run_work(parse_event(event), SETTINGS)
    assert isinstance(decided, intake.Ignored) and why in decided.reason


@pytest.mark.parametrize("body, says", [
    ("not json", "not JSON"),
    ("[1]", "not a JSON object"),
    ('{"id": "x", "container": "incoming"}', "'name'"),
])
def test_a_blob_message_the_webhook_did_not_write_is_a_clear_error(body, says):
    with pytest.raises(intake.BadMessage, match=says):
        intake.read_blob_work(body)


def test_a_run_message_holding_another_event_is_a_clear_error():
    with pytest.raises(intake.BadMessage, match="not a run event"):
        intake.read_run_work(json.dumps(blob_created()))


# ---------------------------------------------------------------- the webhook functions, as the worker calls them

class Out(func.Out[str]):
    def __init__(self) -> None:
        self.value = None

    def set(self, val: str) -> None:
        self.value = val

    def get(self):
        return self.value


@pytest.fixture
def functions(app_functions):
    return app_functions


@pytest.fixture
def env(monkeypatch):
    for name, value in {"RETRAINER_AML_SUBSCRIPTION_ID": "sub-1", "RETRAINER_AML_RESOURCE_GROUP": "rg",
                        "RETRAINER_AML_WORKSPACE": "ws"}.items():
        monkeypatch.setenv(name, value)
    bootstrap.reset()
    yield
    bootstrap.reset()


def grid(document: dict) -> func.EventGridEvent:
    return func.EventGridEvent(id=document["id"], topic=document["topic"], subject=document["subject"],
                               event_type=document["eventType"], data=document["data"],
                               data_version=document["dataVersion"],
                               event_time=datetime(2026, 11, 30, 2, tzinfo=timezone.utc))


def cloud(document: dict) -> func.CloudEvent:
    """What the worker builds for a subscription in the CloudEvents 1.0 schema (whatever the annotation)."""
    return func.CloudEvent(id=document["id"], source=document["topic"], subject=document["subject"],
                           type=document["eventType"], specversion="1.0", data=document["data"],
                           time=datetime(2026, 11, 30, 2, tzinfo=timezone.utc))


@pytest.mark.parametrize("envelope", [grid, cloud])
def test_the_webhooks_queue_what_passes_the_filters_from_either_schema(functions, env, envelope):
    blob_out, run_out = Out(), Out()
    functions["blob_events"](envelope(blob_created()), blob_out)
    functions["ml_events"](envelope(run_event("Failed")), run_out)

    assert intake.read_blob_work(blob_out.value).name == "2026/a.csv"
    assert intake.read_run_work(run_out.value).run_status == "Failed"


def test_the_webhooks_queue_nothing_for_what_the_filters_drop_or_a_malformed_event(functions, env, caplog):
    outs = [Out() for _ in range(3)]
    functions["blob_events"](grid(blob_created(api="CreateFile", size=0)), outs[0])
    functions["ml_events"](grid(run_event("Running")), outs[1])
    malformed = blob_created()
    malformed["data"]["contentLength"] = "many"
    functions["blob_events"](grid(malformed), outs[2])

    assert [o.value for o in outs] == [None, None, None]
    assert "contentLength must be a non-negative integer" in caplog.text
