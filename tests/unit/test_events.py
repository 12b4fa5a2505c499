import json

import pytest

from retrainer.events import (BadEvent, BlobCreated, RunCompleted, RunStatusChanged, UnknownEvent,
                              parse_event)
from retrainer.ports import RunStatus

WORKSPACE = ("/subscriptions/sub-1/resourceGroups/rg/providers/Microsoft.MachineLearningServices"
             "/workspaces/ws")
RUN_DATA = {
    "experimentId": "0fa9dfaa-cba3-4fa7-b590-23e48548f5c1",
    "experimentName": "diabetes-retraining",
    "runId": "run-42",
    "runType": None,
    "runTags": {"retrainer.key": "blob:incoming/a.csv@0x1", "retrainer.app": "retrainer", "count": 3},
    "runProperties": {"azureml.runsource": "azureml.PipelineRun"},
}


def grid_event(event_type, data, subject="experiments/x/runs/run-42", topic=WORKSPACE):
    return {"id": "evt-1", "topic": topic, "subject": subject, "eventType": event_type,
            "eventTime": "2017-06-26T18:41:00.9584103Z", "data": data, "dataVersion": "", "metadataVersion": "1"}


def cloud_event(event_type, data, subject="experiments/x/runs/run-42", source=WORKSPACE):
    return {"id": "evt-1", "source": source, "subject": subject, "type": event_type,
            "time": "2017-06-26T18:41:00.9584103Z", "data": data, "specversion": "1.0"}


BLOB_DATA = {"api": "PutBlob", "clientRequestId": "c", "requestId": "r", "eTag": "0x8DC1A2B3C4D5E6F",
             "contentType": "text/csv", "contentLength": 524288, "blobType": "BlockBlob",
             "url": "https://acct.blob.core.windows.net/incoming/2026/diabetes.csv",
             "sequencer": "00000000000004420000000000028963", "storageDiagnostics": {"batchId": "b"}}
BLOB_SUBJECT = "/blobServices/default/containers/incoming/blobs/2026/diabetes.csv"


@pytest.mark.parametrize("envelope", [grid_event, cloud_event])
def test_run_completed_parses_from_both_schemas(envelope):
    event = parse_event(envelope("Microsoft.MachineLearningServices.RunCompleted", RUN_DATA))

    assert isinstance(event, RunCompleted)
    assert (event.topic, event.run_id, event.run_status) == (WORKSPACE, "run-42", RunStatus.COMPLETED)
    assert event.experiment_name == "diabetes-retraining"
    assert event.experiment_id == "0fa9dfaa-cba3-4fa7-b590-23e48548f5c1"
    assert event.run_type is None
    assert event.run_tags["retrainer.key"] == "blob:incoming/a.csv@0x1"
    assert event.run_tags["count"] == "3"   # tag values come out as strings
    assert event.run_properties == {"azureml.runsource": "azureml.PipelineRun"}
    assert event.time.year == 2017


@pytest.mark.parametrize("raw, status", [("failed", RunStatus.FAILED), ("Canceled", RunStatus.CANCELED),
                                         ("Running", RunStatus.RUNNING), ("Completed", RunStatus.COMPLETED)])
@pytest.mark.parametrize("envelope", [grid_event, cloud_event])
def test_run_status_changed_maps_status_of_any_case(envelope, raw, status):
    event = parse_event(envelope("Microsoft.MachineLearningServices.RunStatusChanged",
                                 {**RUN_DATA, "runStatus": raw}))

    assert isinstance(event, RunStatusChanged)
    assert event.run_status == status


@pytest.mark.parametrize("envelope", [grid_event, cloud_event])
def test_blob_created_parses_container_name_and_data(envelope):
    event = parse_event(envelope("Microsoft.Storage.BlobCreated", BLOB_DATA, subject=BLOB_SUBJECT,
                                 **({"topic": "/acct"} if envelope is grid_event else {"source": "/acct"})))

    assert isinstance(event, BlobCreated)
    assert (event.container, event.name) == ("incoming", "2026/diabetes.csv")
    assert (event.etag, event.size, event.api) == ("0x8DC1A2B3C4D5E6F", 524288, "PutBlob")
    assert event.sequencer == "00000000000004420000000000028963"
    assert event.url.endswith("/incoming/2026/diabetes.csv")


@pytest.mark.parametrize("event_type", ["Microsoft.EventGrid.SubscriptionValidationEvent",
                                        "Microsoft.Storage.BlobDeleted",
                                        "Microsoft.MachineLearningServices.ModelRegistered"])
def test_unknown_types_parse_to_unknown_event(event_type):
    event = parse_event(grid_event(event_type, {"anything": 1}))
    assert isinstance(event, UnknownEvent)
    assert event.type == event_type


def test_json_text_is_accepted():
    text = json.dumps(cloud_event("Microsoft.MachineLearningServices.RunCompleted", RUN_DATA))
    assert parse_event(text).run_id == "run-42"
    assert parse_event(text.encode()).run_id == "run-42"


RUN_COMPLETED = "Microsoft.MachineLearningServices.RunCompleted"
MALFORMED = {
    "not json": "{not json",
    "not an object": "[1, 2]",
    "neither schema": {"id": "1", "data": {}},
    "no id": {k: v for k, v in grid_event(RUN_COMPLETED, RUN_DATA).items() if k != "id"},
    "no data": {**grid_event(RUN_COMPLETED, RUN_DATA), "data": None},
    "data not json": {**grid_event(RUN_COMPLETED, RUN_DATA), "data": "{oops"},
    "no run id": grid_event(RUN_COMPLETED, {**RUN_DATA, "runId": ""}),
    "tags not an object": grid_event(RUN_COMPLETED, {**RUN_DATA, "runTags": ["a"]}),
    "status missing": grid_event("Microsoft.MachineLearningServices.RunStatusChanged", RUN_DATA),
    "bad time": {**grid_event(RUN_COMPLETED, RUN_DATA), "eventTime": "yesterday"},
    "old cloudevents": {**cloud_event(RUN_COMPLETED, RUN_DATA), "specversion": "0.3"},
    "blob bad subject": grid_event("Microsoft.Storage.BlobCreated", BLOB_DATA, subject="/containers/x"),
    "blob length text": grid_event("Microsoft.Storage.BlobCreated", {**BLOB_DATA, "contentLength": "12"},
                                   BLOB_SUBJECT),
    "blob no etag": grid_event("Microsoft.Storage.BlobCreated", {**BLOB_DATA, "eTag": None}, BLOB_SUBJECT),
}


@pytest.mark.parametrize("payload", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_payloads_raise_bad_event_with_one_line(payload):
    with pytest.raises(BadEvent) as error:
        parse_event(payload)
    assert isinstance(error.value, ValueError)
    assert str(error.value) and "\n" not in str(error.value)
