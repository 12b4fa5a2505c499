"""The whole loop without a host: the functions' own code, called with real azure.functions inputs.

blob -> blob_ingest -> a local run in a detached worker -> its RunCompleted event over real HTTP
-> ml_events -> a model version in the MLflow registry -> a notification received over HTTP.
Azurite serves blob and table storage; the event and the notification land on a loopback endpoint.
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


@pytest.fixture(scope="module")
def functions():
    import function_app

    # get_functions() may be called once per app object: keep the list.
    return {f.get_function_name(): f.get_user_function() for f in function_app.app.get_functions()}


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


def blob_input(container, name: str, data: bytes) -> func.blob.InputStream:
    client = container.get_blob_client(name)
    return func.blob.InputStream(data=data, name=f"{container.container_name}/{name}", uri=client.url,
                                 length=len(data))


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

    functions["blob_ingest"](blob_input(container, "diabetes.csv", data))
    # at least once: the same blob (same ETag) again changes nothing
    functions["blob_ingest"](blob_input(container, "diabetes.csv", data))

    posted = recorder.wait_for(lambda r: r.path.startswith("/runtime/webhooks/eventgrid"), timeout=240)
    assert len(posted) == 1 and len(posted[0].body) == 1, "one run, one event"
    assert posted[0].headers.get("aeg-sas-key") == EVENTS_KEY
    event = posted[0].body[0]
    assert event["eventType"] == "Microsoft.MachineLearningServices.RunCompleted"

    functions["ml_events"](event_input(event))
    functions["ml_events"](event_input(event))  # redelivered: no second version, no second notice

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

    functions["blob_ingest"](blob_input(container, "people.csv", data))

    notices = recorder.wait_for(lambda r: r.path == "/notify")
    assert [n.body["type"] for n in notices] == ["retrainer.data.rejected"]
    assert "Diabetic" in json.dumps(notices[0].body["data"])
    service = BlobServiceClient.from_connection_string(os.environ["RETRAINER_DATA_STORAGE"])
    copies = list(service.get_container_client("quarantine").list_blobs(include=["metadata"]))
    assert [c.name for c in copies] == ["incoming/people.csv"]
    assert copies[0].metadata.get("reason")
    assert container.get_blob_client("people.csv").exists(), "the original is never deleted"
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
    functions["blob_ingest"](blob_input(container, "people.csv", b"name,age\nalice,31\n"))

    listed = json.loads(functions["list_runs"](http_request("GET", "runs", params={"limit": "5"})).get_body())
    [row] = listed["runs"]
    assert row["state"] == "rejected"
    one = functions["get_run"](http_request("GET", "runs/x", route_params={"key": row["key"]}))
    assert one.status_code == 200 and json.loads(one.get_body())["key"] == row["key"]
    assert functions["get_run"](http_request("GET", "runs/x", route_params={"key": "blob:nope"})).status_code == 404
    assert functions["list_runs"](http_request("GET", "runs", params={"limit": "all"})).status_code == 400
    health = functions["health"](http_request("GET", "health"))
    assert health.status_code == 200 and WEBHOOK_KEY not in health.get_body().decode()
