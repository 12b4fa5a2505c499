"""The Event Grid webhook of a running dev host, driven by azure-eventgrid's EventGridPublisherClient
as Event Grid would deliver: handshake, keys, 404/400s, 202 for a good batch, 500 when one event fails.

This host starts its own Azurite (no AzureWebJobsStorage configured)."""
from __future__ import annotations

import os

import httpx
import pytest
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import HttpResponseError
from azure.core.messaging import CloudEvent
from azure.eventgrid import EventGridEvent, EventGridPublisherClient
from azure.storage.blob import BlobServiceClient

from tests.fixtures.devhost_app.harness import (EVENTGRID_KEY, MASTER_KEY, EnvironmentSnapshot, app_folder,
    host, invocations)
from tests.support.waiting import wait_for

NOTIFICATION = {"aeg-event-type": "Notification"}


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    with EnvironmentSnapshot():
        for name in ("AzureWebJobsStorage", "FIXTURE_DATA_STORAGE"):
            os.environ.pop(name, None)
        folder = app_folder(tmp_path_factory.mktemp("eventgrid"))  # both UseDevelopmentStorage=true
        with host(folder) as devhost:
            yield devhost, folder
        assert os.environ["FIXTURE_DATA_STORAGE"] == "UseDevelopmentStorage=true"  # restored


def webhook(devhost, function: str = "on_event", **params: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in {"functionName": function, **params}.items())
    return f"{devhost.base_url}/runtime/webhooks/eventgrid?{query}"


def deliver(endpoint: str, events: list) -> int:
    """POST a batch with the publisher client; its status code. The client is made for topics, which
    answer 200, so it raises on the host's 202 too. Retries are off so each batch is delivered once
    (per call: the client drops constructor options such as retry_total for basic topics)."""
    client = EventGridPublisherClient(endpoint, AzureKeyCredential("topic-key-unused-by-the-host"))
    try:
        client.send(events, headers=NOTIFICATION, retry_total=0)
        return 200
    except HttpResponseError as error:
        # on a 404 the client raises a new error without the response, chained to the original
        original = error.__cause__ if isinstance(error.__cause__, HttpResponseError) else error
        return original.status_code
    finally:
        client.close()


def event(subject: str) -> EventGridEvent:
    return EventGridEvent(subject=subject, event_type="Test.Happened", data={"subject": subject}, data_version="1")


def seen(folder, subject: str) -> list[dict]:
    return [row for row in invocations(folder, "on_event") if row["subject"] == subject]


def test_host_started_its_own_azurite_for_development_storage_settings(running):
    devhost, _ = running
    assert "127.0.0.1" in devhost.connection_string
    assert os.environ["AzureWebJobsStorage"] == os.environ["FIXTURE_DATA_STORAGE"] == devhost.connection_string
    assert BlobServiceClient.from_connection_string(devhost.connection_string).get_container_client(
        "azure-webjobs-hosts").exists()


def test_subscription_validation_handshake(running):
    devhost, _ = running
    response = httpx.post(webhook(devhost, code=EVENTGRID_KEY), headers={"aeg-event-type": "SubscriptionValidation"},
                          json=[{"id": "1", "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
                                 "subject": "", "eventTime": "2026-11-29T08:00:00Z", "dataVersion": "1",
                                 "data": {"validationCode": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"}}])
    assert response.status_code == 200
    assert response.json() == {"validationResponse": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"}


def test_a_batch_is_delivered_to_the_function_and_answered_202(running):
    devhost, folder = running
    assert deliver(webhook(devhost, code=EVENTGRID_KEY), [event("one"), event("two")]) == 202
    assert [r["data"] for r in seen(folder, "one") + seen(folder, "two")] == [{"subject": "one"},
                                                                               {"subject": "two"}]


def test_the_key_may_come_in_the_x_functions_key_header_and_the_master_key_works(running):
    devhost, folder = running
    response = httpx.post(webhook(devhost), headers={**NOTIFICATION, "x-functions-key": MASTER_KEY},
                          json=[{"id": "h1", "subject": "by-header", "eventType": "T", "dataVersion": "1",
                                 "eventTime": "2026-11-29T08:00:00.1234567Z", "data": {}}])
    assert response.status_code == 202 and len(seen(folder, "by-header")) == 1


def test_cloudevents_schema_is_accepted(running):
    devhost, folder = running
    batch = [CloudEvent(source="/retrainer/test", type="retrainer.test", subject="cloud", data={"n": 1})]
    assert deliver(webhook(devhost, code=EVENTGRID_KEY), batch) == 202
    (row,) = seen(folder, "cloud")
    assert row["type"] == "retrainer.test" and row["topic"] == "/retrainer/test" and row["data"] == {"n": 1}


def test_a_batch_with_one_failing_event_is_answered_500_after_running_all(running):
    devhost, folder = running
    assert deliver(webhook(devhost, code=EVENTGRID_KEY), [event("fail"), event("after-fail")]) == 500
    assert len(seen(folder, "fail")) == 1 and len(seen(folder, "after-fail")) == 1


@pytest.mark.parametrize("params", [{}, {"code": "wrong-key"}])
def test_no_or_a_wrong_key_is_401_and_nothing_runs(running, params):
    devhost, folder = running
    assert deliver(webhook(devhost, **params), [event("keyless")]) == 401
    assert seen(folder, "keyless") == []


def test_unknown_function_is_404(running):
    devhost, _ = running
    assert deliver(webhook(devhost, function="no_such_function", code=EVENTGRID_KEY), [event("x")]) == 404
    # The Event Grid extension knows its functions by their bare name, exactly.
    assert deliver(webhook(devhost, function="Host.Functions.on_event", code=EVENTGRID_KEY), [event("x")]) == 404
    assert deliver(webhook(devhost, function="On_Event", code=EVENTGRID_KEY), [event("x")]) == 404
    # a function that exists but is not an Event Grid trigger is not one either
    assert deliver(webhook(devhost, function="hello", code=EVENTGRID_KEY), [event("x")]) == 404


@pytest.mark.parametrize("function", ["Host.Functions.on_event", "on_event", "anything"])
def test_the_blobs_webhook_accepts_any_function_id_and_runs_nothing_as_no_blob_trigger_has_it(running, function):
    devhost, folder = running
    url = f"{devhost.base_url}/runtime/webhooks/blobs"
    assert httpx.post(url, params={"functionName": function}, headers=NOTIFICATION, json=[{}]).status_code == 401
    handshake = httpx.post(url, params={"functionName": function, "code": EVENTGRID_KEY},
                           headers={"aeg-event-type": "SubscriptionValidation"},
                           json=[{"id": "v", "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
                                  "subject": "", "data": {"validationCode": "abc-123"}}])
    assert handshake.json() == {"validationResponse": "abc-123"}
    created = {"id": f"blob-{function}", "eventType": "Microsoft.Storage.BlobCreated", "subject": "blobs-webhook",
               "dataVersion": "", "eventTime": "2026-11-29T08:00:00Z", "data": {"api": "PutBlob"}}
    response = httpx.post(url, params={"functionName": function, "code": EVENTGRID_KEY}, headers=NOTIFICATION,
                          json=[created])
    assert response.status_code == 202
    assert deliver(webhook(devhost, code=EVENTGRID_KEY), [event("after-blobs")]) == 202   # the host carries on
    assert seen(folder, "blobs-webhook") == []


@pytest.mark.parametrize("headers, body", [
    ({}, b'[{"id": "1"}]'),                                           # no aeg-event-type
    ({"aeg-event-type": "Whatever"}, b'[{"id": "1"}]'),               # unknown aeg-event-type
    (NOTIFICATION, b"this is not json"),
    (NOTIFICATION, b'[{"id": "1", "data": {}}]'),                      # an event without its fields
])
def test_bad_deliveries_are_400_with_a_reason(running, headers, body):
    devhost, _ = running
    response = httpx.post(webhook(devhost, code=EVENTGRID_KEY), headers=headers, content=body)
    assert response.status_code == 400
    assert response.json()["error"]


def test_admin_endpoint_fires_an_event_grid_function_by_hand(running):
    devhost, folder = running
    given = '{"id": "m1", "subject": "manual", "eventType": "T", "dataVersion": "1", "data": {"k": 2}}'
    response = httpx.post(f"{devhost.base_url}/admin/functions/on_event", json={"input": given},
                          headers={"x-functions-key": MASTER_KEY})
    assert response.status_code == 202
    wait_for(lambda: seen(folder, "manual"), "the manual run")
