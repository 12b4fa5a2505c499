"""Blob triggers through a running dev host against Azurite: once per blob version, receipts that
survive a restart, poison after 5 failures, and BlobCreated events on the blobs webhook."""
from __future__ import annotations

import base64
import json

import httpx
import pytest
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueServiceClient

from devhost.blob_poller import HOSTS_CONTAINER, POISON_QUEUE
from tests.fixtures.devhost_app.harness import (EVENTGRID_KEY, EnvironmentSnapshot, app_folder, host,
    invocations, use_storage)
from tests.support.waiting import wait_for


@pytest.fixture
def env(azurite):
    with EnvironmentSnapshot():
        use_storage(azurite.connection_string)
        yield azurite.connection_string


def names(folder, blob_name: str) -> list[dict]:
    return [row for row in invocations(folder, "on_blob") if row["name"].endswith("/" + blob_name)]


def processed(folder, blob_name: str, count: int = 1):
    return wait_for(lambda: len(names(folder, blob_name)) >= count, f"{blob_name} processed {count} time(s)")


def test_each_blob_version_is_processed_once_even_across_a_restart(env, tmp_path):
    folder = app_folder(tmp_path, IN_CONTAINER="once")
    container = BlobServiceClient.from_connection_string(env).get_container_client("once")
    with host(folder) as first:
        container.upload_blob("a.csv", b"first")
        processed(folder, "a.csv")
        # Later scans see a.csv again (same ETag); a blob uploaded after it proves they happened.
        container.upload_blob("b.csv", b"sentinel")
        processed(folder, "b.csv")
        assert len(names(folder, "a.csv")) == 1
        (row,) = names(folder, "a.csv")
        assert row["name"] == "once/a.csv" and row["data"] == "first" and row["length"] == 5

        container.upload_blob("a.csv", b"second", overwrite=True)  # a new ETag: a new version
        processed(folder, "a.csv", 2)
        second = names(folder, "a.csv")[1]
        assert second["data"] == "second" and second["etag"] != row["etag"]

        receipts = [b.name for b in BlobServiceClient.from_connection_string(env)
                    .get_container_client(HOSTS_CONTAINER)
                    .list_blobs(name_starts_with=f"blobreceipts/{first.settings.host_id}/Host.Functions.on_blob/")]
        assert f"blobreceipts/{first.settings.host_id}/Host.Functions.on_blob/{second['etag']}/once/a.csv" in receipts

    with host(folder):
        container.upload_blob("c.csv", b"after restart")
        processed(folder, "c.csv")
        assert len(names(folder, "a.csv")) == 2 and len(names(folder, "b.csv")) == 1


def test_a_blob_failing_five_times_goes_to_the_poison_queue_and_is_not_retried(env, tmp_path):
    folder = app_folder(tmp_path, IN_CONTAINER="poison")
    container = BlobServiceClient.from_connection_string(env).get_container_client("poison")
    queue = QueueServiceClient.from_connection_string(env).get_queue_client(POISON_QUEUE)
    with host(folder):
        container.upload_blob("bad.csv", b"fail")
        body = wait_for(lambda: next((m for m in map(poison_message, queue.peek_messages(max_messages=32))
                                      if m["ContainerName"] == "poison"), None), "a poison message")
        container.upload_blob("good.csv", b"ok")
        processed(folder, "good.csv")
        assert len(names(folder, "bad.csv")) == 5
    etag = names(folder, "bad.csv")[0]["etag"]
    assert body == {"Type": "BlobTrigger", "FunctionId": "Host.Functions.on_blob", "BlobType": "BlockBlob",
                    "ContainerName": "poison", "BlobName": "bad.csv", "ETag": etag}
    with host(folder):  # a restart does not retry a poisoned blob either
        container.upload_blob("good2.csv", b"ok")
        processed(folder, "good2.csv")
        assert len(names(folder, "bad.csv")) == 5


def test_the_poison_threshold_comes_from_host_json(env, tmp_path):
    folder = app_folder(tmp_path, host_json={"extensions": {"blobs": {"poisonBlobThreshold": 2}}},
                        IN_CONTAINER="threshold")
    queue = QueueServiceClient.from_connection_string(env).get_queue_client(POISON_QUEUE)
    with host(folder):
        BlobServiceClient.from_connection_string(env).get_container_client("threshold").upload_blob("bad.csv", b"fail")
        wait_for(lambda: any(m["ContainerName"] == "threshold"
                             for m in map(poison_message, queue.peek_messages(max_messages=32))), "a poison message")
    assert len(names(folder, "bad.csv")) == 2


def poison_message(message) -> dict:
    return json.loads(base64.b64decode(message.content))


def blob_created(container: str, name: str) -> dict:
    return {"id": f"evt-{name}", "eventType": "Microsoft.Storage.BlobCreated", "dataVersion": "",
            "subject": f"/blobServices/default/containers/{container}/blobs/{name}",
            "eventTime": "2026-11-29T08:00:00.1234567Z", "topic": "/subscriptions/x/storageAccounts/devstoreaccount1",
            "data": {"api": "PutBlob", "contentLength": 6,  # the size of b"pushed"
                     "url": f"http://127.0.0.1/devstoreaccount1/{container}/{name}"}}


def test_blob_created_events_on_the_blobs_webhook_trigger_the_function_named_by_its_id(env, tmp_path):
    folder = app_folder(tmp_path, IN_CONTAINER="pushed")
    container = BlobServiceClient.from_connection_string(env).get_container_client("pushed")
    # A poll interval far beyond the test: only the webhook can trigger the function.
    with host(folder, poll_interval=3600) as running:
        container.upload_blob("x.csv", b"pushed")
        url = f"{running.base_url}/runtime/webhooks/blobs"
        notification = {"aeg-event-type": "Notification"}
        params = {"functionName": "Host.Functions.on_blob", "code": EVENTGRID_KEY}
        handshake = httpx.post(url, params=params, headers={"aeg-event-type": "SubscriptionValidation"},
                               json=[{"id": "v", "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
                                      "subject": "", "data": {"validationCode": "abc-123"}}])
        assert handshake.status_code == 200 and handshake.json() == {"validationResponse": "abc-123"}
        assert httpx.post(url, params={"functionName": "on_blob"}, headers=notification,
                          json=[blob_created("pushed", "x.csv")]).status_code == 401
        # As the blobs extension: any other function id (the bare name too) is accepted and dropped.
        for other in ("on_blob", "Host.Functions.tick", "Host.Functions.nothing"):
            assert httpx.post(url, params={**params, "functionName": other}, headers=notification,
                              json=[blob_created("pushed", "x.csv")]).status_code == 202
        response = httpx.post(url, params=params, headers=notification, json=[blob_created("pushed", "x.csv")])
        assert response.status_code == 202
        processed(folder, "x.csv")
        # Event Grid delivers at least once: the same event again finds the receipt.
        httpx.post(url, params=params, headers=notification, json=[blob_created("pushed", "x.csv")])
        container.upload_blob("y.csv", b"sentinel")
        httpx.post(url, params=params, headers=notification, json=[blob_created("pushed", "y.csv")])
        processed(folder, "y.csv")
        assert len(names(folder, "x.csv")) == 1
