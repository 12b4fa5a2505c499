"""The whole loop without a host: the functions' own code, called with real azure.functions inputs.

BlobCreated -> blob_events -> its queue message -> blob_ingest -> a local run in a detached worker -> its
RunCompleted event over real HTTP -> ml_events -> its queue message -> run_finished -> a model version in the
MLflow registry -> a notification received over HTTP. Azurite serves blob and table storage; the event and the
notification land on a loopback endpoint; the queue hop is the host's, so the message is handed over here.
"""
from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path

import azure.functions as func
import pytest
from azure.storage.blob import BlobServiceClient

from retrainer import bootstrap
from tests.support.recorder import Recorder

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "diabetes_sample.csv"
EVENTS_KEY = "events-key-for-tests"
WEBHOOK_KEY = "webhook-key-for-tests"


@pytest.fixture
def functions(app_functions):
    return app_functions


@pytest.fixture
def loop(azurite, tmp_path, monkeypatch):
    recorder = Recorder()
    env = {
        "AzureWebJobsStorage": azurite.connection_string,
        "RETRAINER_DATA_STORAGE": azurite.connection_string,
        "RETRAINER_INCOMING_PATH": "incoming/{name}",
        "RETRAINER_LEDGER_TABLE": f"ledger{tmp_path.name[-8:].replace('_', '')}",
        "RETRAINER_STATE_DIR": str(tmp_path / "state"),
        "RETRAINER_LOCAL_EVENTS_ENDPOINT": f"{recorder.url}/runtime/webhooks/eventgrid",
        "RETRAINER_LOCAL_EVENTS_KEY": EVENTS_KEY,
        "RETRAINER_NOTIFY_WEBHOOK_URL": f"{recorder.url}/notify",
        "RETRAINER_NOTIFY_WEBHOOK_KEY": WEBHOOK_KEY,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    bootstrap.reset()
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    container = service.get_container_client("incoming")
    if not container.exists():
        container.create_container()
    yield recorder, container, tmp_path / "state"
    bootstrap.reset()
    recorder.close()


class Out(func.Out[str]):
    """A queue output binding: what the function set is what the host would enqueue."""

    def __init__(self) -> None:
        self.value: str | None = None

    def set(self, val: str) -> None:
        self.value = val

    def get(self) -> str | None:
        return self.value


def through_queue(functions, webhook: str, worker: str, event: func.EventGridEvent) -> str | None:
    """Deliver `event` to the webhook function and, if it queued work, that message to the queue worker."""
    out = Out()
    functions[webhook](event, out)
    if out.value is not None:
        functions[worker](func.QueueMessage(id="m1", body=out.value.encode()))
    return out.value


def blob_created(container, name: str, api: str = "PutBlob") -> func.EventGridEvent:
    properties = container.get_blob_client(name).get_blob_properties()
    return func.EventGridEvent(
        id=f"{name}-{properties.etag}-{api}", topic="/subscriptions/s/resourceGroups/r/providers/Microsoft.Storage/"
                                                 "storageAccounts/devstoreaccount1",
        subject=f"/blobServices/default/containers/{container.container_name}/blobs/{name}",
        event_type="Microsoft.Storage.BlobCreated", event_time=datetime.now(), data_version="",
        data={"api": api, "eTag": properties.etag.strip('"'), "contentLength": properties.size,
              "blobType": "BlockBlob", "sequencer": "1", "url": container.get_blob_client(name).url})


def ingest(functions, container, name: str) -> str | None:
    return through_queue(functions, "blob_events", "blob_ingest", blob_created(container, name))


def event_input(document: dict) -> func.EventGridEvent:
    return func.EventGridEvent(
        id=document["id"], data=document["data"], topic=document["topic"], subject=document["subject"],
        event_type=document["eventType"], event_time=datetime.fromisoformat(document["eventTime"]),
        data_version=document["dataVersion"])


def model_versions(state_dir: Path, name: str = "diabetes_model") -> list:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{(state_dir / 'mlflow.db').resolve()}"
    return list(MlflowClient(tracking_uri=uri, registry_uri=uri).search_model_versions(f"name = '{name}'"))


def test_a_landed_file_becomes_a_registered_model_and_a_notification(functions, loop):
    recorder, container, state_dir = loop
    data = SAMPLE.read_bytes()
    container.upload_blob("diabetes.csv", data, overwrite=True)

    assert ingest(functions, container, "diabetes.csv")
    # at least once: the same blob (same ETag) again changes nothing
    assert ingest(functions, container, "diabetes.csv")

    posted = recorder.wait_for(lambda r: r.path.startswith("/runtime/webhooks/eventgrid"), timeout=240)
    assert len(posted) == 1 and len(posted[0].body) == 1, "one run, one event"
    assert posted[0].headers.get("aeg-sas-key") == EVENTS_KEY
    event = posted[0].body[0]
    assert event["eventType"] == "Microsoft.MachineLearningServices.RunCompleted"

    assert through_queue(functions, "ml_events", "run_finished", event_input(event))
    # redelivered: no second version, no second notice
    assert through_queue(functions, "ml_events", "run_finished", event_input(event))

    versions = model_versions(state_dir)
    assert len(versions) == 1
    assert versions[0].tags["retrainer.run_id"] == event["data"]["runId"]
    assert float(versions[0].tags["AUC"]) >= 0.85

    notices = recorder.wait_for(lambda r: r.path == "/notify")
    assert [n.body["type"] for n in notices] == ["retrainer.model.registered"]
    assert notices[0].headers.get("x-retrainer-key") == WEBHOOK_KEY
    assert notices[0].body["data"]["model_version"] == versions[0].version


def test_a_malformed_file_is_rejected_quarantined_and_reported(functions, loop):
    recorder, container, state_dir = loop
    data = b"name,age\nalice,31\n"
    container.upload_blob("people.csv", data, overwrite=True)

    ingest(functions, container, "people.csv")

    notices = recorder.wait_for(lambda r: r.path == "/notify")
    assert [n.body["type"] for n in notices] == ["retrainer.data.rejected"]
    assert "Diabetic" in json.dumps(notices[0].body["data"])
    service = BlobServiceClient.from_connection_string(os.environ["RETRAINER_DATA_STORAGE"])
    copies = list(service.get_container_client("quarantine").list_blobs(include=["metadata"]))
    assert [c.name for c in copies] == ["incoming/people.csv"]
    assert copies[0].metadata.get("reason")
    assert container.get_blob_client("people.csv").exists(), "the original is never deleted"
    assert not (state_dir / "workers").exists(), "nothing was submitted"


@pytest.mark.parametrize("name, row, says", [
    ("words.csv", "9999999,two,95,70,30,80,31.5,0.5,40,1", "column Pregnancies: 'two' is not a number"),
    ("label7.csv", "9999999,2,95,70,30,80,31.5,0.5,40,7", "column Diabetic: 7 is not an allowed value"),
])
def test_a_file_that_cannot_train_is_rejected_before_any_run(functions, loop, name, row, says):
    """Well-formed CSV that breaks the pipeline's data contract: quarantined and reported at the door, not
    submitted to fail minutes later in prep or train."""
    recorder, container, state_dir = loop
    lines = SAMPLE.read_text().splitlines()
    container.upload_blob(name, "\n".join(lines[:50] + [row] + lines[50:200]) + "\n", overwrite=True)

    ingest(functions, container, name)

    notices = recorder.wait_for(lambda r: r.path == "/notify")
    assert [n.body["type"] for n in notices] == ["retrainer.data.rejected"]
    assert says in notices[0].body["data"]["reason"] and "row 51" in notices[0].body["data"]["reason"]
    assert notices[0].body["data"]["reason_code"] == "breaks_contract"
    service = BlobServiceClient.from_connection_string(os.environ["RETRAINER_DATA_STORAGE"])
    assert service.get_blob_client("quarantine", f"incoming/{name}").exists()
    assert not (state_dir / "workers").exists(), "nothing was submitted"


def http_request(method: str, route: str, body: bytes = b"", params=None, headers=None, route_params=None):
    return func.HttpRequest(method, f"http://localhost/api/{route}", body=body, params=params or {},
                            headers=headers or {}, route_params=route_params or {})


@pytest.mark.parametrize("body, headers, says", [
    (b"not json", {}, "not JSON"),
    (b'{"path": "incoming/a.csv"}', {}, 'missing "data_path"'),
    (b'{"data_path": "elsewhere/a.csv"}', {}, "is not in container 'incoming'"),
    (b'{"data_path": "incoming/../secrets.csv"}', {}, ".."),
    (b'{"data_path": "incoming/nothing-here.csv"}', {}, "no data at incoming/nothing-here.csv"),
    (b'{"data_path": "incoming/a.csv"}', {"Idempotency-Key": "x" * 201}, "Idempotency-Key"),
])
def test_a_bad_retrain_request_is_a_400_with_one_line(functions, loop, body, headers, says):
    response = functions["retrain"](http_request("POST", "retrain", body, headers=headers))

    assert response.status_code == 400
    error = json.loads(response.get_body())["error"]
    assert says in error and "\n" not in error


def test_the_runs_api_answers_lineage_and_refuses_bad_input(functions, loop):
    recorder, container, state_dir = loop
    container.upload_blob("people.csv", b"name,age\nalice,31\n", overwrite=True)
    ingest(functions, container, "people.csv")

    listed = json.loads(functions["list_runs"](http_request("GET", "runs", params={"limit": "5"})).get_body())
    [row] = listed["runs"]
    assert row["state"] == "rejected"
    one = functions["get_run"](http_request("GET", "runs/x", route_params={"key": row["key"]}))
    assert one.status_code == 200 and json.loads(one.get_body())["key"] == row["key"]
    assert functions["get_run"](http_request("GET", "runs/x", route_params={"key": "blob:nope"})).status_code == 404
    assert functions["list_runs"](http_request("GET", "runs", params={"limit": "all"})).status_code == 400
    health = functions["health"](http_request("GET", "health"))
    assert health.status_code == 200 and WEBHOOK_KEY not in health.get_body().decode()


def test_work_the_host_gave_up_on_is_reported_once_and_shown_by_health(functions, loop, azurite):
    """The host moves a message that failed maxDequeueCount times to <queue>-poison; reconcile tells people
    once, and the health details ask for attention while it waits there."""
    from azure.core.exceptions import ResourceExistsError
    from azure.storage.queue import QueueClient, TextBase64EncodePolicy

    recorder, container, state_dir = loop
    poison = QueueClient.from_connection_string(azurite.connection_string, "retrainer-blob-events-poison",
                                                message_encode_policy=TextBase64EncodePolicy())
    try:
        poison.create_queue()
    except ResourceExistsError:
        poison.clear_messages()
    poison.send_message('{"id": "e9", "container": "incoming", "name": "stuck.csv", "etag": "0x9"}')
    timer = func.timer.TimerRequest()

    functions["reconcile"](timer)
    functions["reconcile"](timer)       # the next sweep: already reported

    notices = recorder.wait_for(lambda r: r.path == "/notify")
    assert [n.body["type"] for n in notices] == ["retrainer.work.poisoned"]
    assert "stuck.csv" in notices[0].body["data"]["body"]
    details = json.loads(functions["health_details"](http_request("GET", "health/details")).get_body())
    assert details["status"] == "attention" and details["queues"]["retrainer-blob-events-poison"] == 1
    poison.clear_messages()
