"""The storage scan standing in for the Event Grid subscription on the data account, against Azurite: the
BlobCreated events a real account emits (PutBlob, PutBlockList, CopyBlob, 0-byte blobs, nothing for staged
blocks; CreateFile then FlushWithClose with a hierarchical namespace), delivered one per POST to an Event Grid
trigger, retried as Event Grid retries, and never sent twice for one blob version across a restart."""
from __future__ import annotations

import time

import pytest
from azure.storage.blob import BlobBlock, BlobServiceClient

from tests.fixtures.devhost_app.harness import EnvironmentSnapshot, app_folder, host, invocations, storage_name, \
    use_storage
from tests.support.waiting import wait_for

TOPIC = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/local/providers/Microsoft.Storage/" \
        "storageAccounts/devstoreaccount1"


@pytest.fixture
def env(azurite):
    with EnvironmentSnapshot():
        use_storage(azurite.connection_string)
        yield azurite.connection_string


def subscribed(folder, container: str, **settings):
    """A host whose subscription delivers `container`'s BlobCreated events to the fixture's `on_event`."""
    return host(folder, subscription_function="on_event", subscription_connection="FIXTURE_DATA_STORAGE",
                subscription_containers=(container,), **settings)


def events(folder, blob: str) -> list[dict]:
    return [r for r in invocations(folder, "on_event") if r["subject"].endswith(f"/blobs/{blob}")]


def delivered(folder, blob: str, count: int = 1) -> list[dict]:
    return wait_for(lambda: len(events(folder, blob)) >= count and events(folder, blob),
                    f"{count} event(s) for {blob}")


def setup(env, tmp_path):
    container = BlobServiceClient.from_connection_string(env).get_container_client(
        f"scan-{storage_name(tmp_path.name)}")
    return app_folder(tmp_path), container


def test_each_upload_sends_the_event_a_storage_account_would(env, tmp_path):
    folder, container = setup(env, tmp_path)
    with subscribed(folder, container.container_name):
        single = container.upload_blob("single.csv", b"a,b\n1,2\n", content_settings=None)
        container.upload_blob("empty.csv", b"")
        blocks = container.get_blob_client("blocks.csv")
        blocks.stage_block("YmxvY2sx", b"a,b\n")
        blocks.stage_block("YmxvY2sy", b"3,4\n")
        blocks.commit_block_list([BlobBlock("YmxvY2sx"), BlobBlock("YmxvY2sy")])
        container.get_blob_client("staged.csv").stage_block("YmxvY2sx", b"never committed")
        container.get_blob_client("copy.csv").start_copy_from_url(container.get_blob_client("single.csv").url)
        container.upload_blob("sentinel.csv", b"last")
        for name in ("single.csv", "empty.csv", "blocks.csv", "copy.csv", "sentinel.csv"):
            delivered(folder, name)

    (event,) = events(folder, "single.csv")
    assert event["type"] == "Microsoft.Storage.BlobCreated" and event["topic"] == TOPIC
    assert event["subject"] == f"/blobServices/default/containers/{container.container_name}/blobs/single.csv"
    data = event["data"]
    assert data["api"] == "PutBlob" and data["contentLength"] == 8 and data["blobType"] == "BlockBlob"
    assert data["eTag"] == single.get_blob_properties().etag.strip('"')
    assert data["url"] == container.get_blob_client("single.csv").url
    assert data["contentType"] and len(data["sequencer"]) == 32
    assert [(e["data"]["api"], e["data"]["contentLength"]) for e in events(folder, "empty.csv")] == [("PutBlob", 0)]
    assert [(e["data"]["api"], e["data"]["contentLength"]) for e in events(folder, "blocks.csv")] == [("PutBlockList", 8)]
    assert [e["data"]["api"] for e in events(folder, "copy.csv")] == ["CopyBlob"]
    assert events(folder, "staged.csv") == []


def test_a_hierarchical_namespace_account_sends_create_file_with_zero_bytes_then_flush_with_close(env, tmp_path):
    folder, container = setup(env, tmp_path)
    with subscribed(folder, container.container_name, hierarchical_namespace=True):
        container.upload_blob("lake.csv", b"x,y\n1,2\n")
        create, flush = sorted(delivered(folder, "lake.csv", 2), key=lambda e: e["data"]["sequencer"])
    assert (create["data"]["api"], create["data"]["contentLength"]) == ("CreateFile", 0)
    assert (flush["data"]["api"], flush["data"]["contentLength"]) == ("FlushWithClose", 8)
    assert create["data"]["eTag"] != flush["data"]["eTag"] and create["id"] != flush["id"]


def test_nothing_is_sent_twice_for_one_blob_version_across_a_restart(env, tmp_path):
    folder, container = setup(env, tmp_path)
    with subscribed(folder, container.container_name):
        container.upload_blob("a.csv", b"first")
        delivered(folder, "a.csv")
    with subscribed(folder, container.container_name):
        container.upload_blob("b.csv", b"after the restart")
        delivered(folder, "b.csv")
        container.upload_blob("a.csv", b"second", overwrite=True)     # a new version: a new event
        delivered(folder, "a.csv", 2)
    with subscribed(folder, container.container_name):
        container.upload_blob("c.csv", b"sentinel")
        delivered(folder, "c.csv")
    assert [len(events(folder, n)) for n in ("a.csv", "b.csv", "c.csv")] == [2, 1, 1]


def test_a_failed_delivery_is_retried_with_the_same_event_until_it_succeeds(env, tmp_path):
    folder, container = setup(env, tmp_path)
    with subscribed(folder, container.container_name, eventgrid_retry_delays=(0.2,)):
        container.upload_blob("flaky.csv", b"fails twice")     # the fixture fails its first two deliveries
        attempts = delivered(folder, "flaky.csv", 3)
        container.upload_blob("sentinel.csv", b"after")
        delivered(folder, "sentinel.csv")
    assert len(events(folder, "flaky.csv")) == 3 and len({e["id"] for e in attempts}) == 1


def test_blobs_written_before_the_subscription_existed_send_nothing(env, tmp_path):
    folder, container = setup(env, tmp_path)
    container.create_container()
    container.upload_blob("old.csv", b"before")
    time.sleep(1.1)      # blob times have whole seconds: the subscription must begin a second later
    with subscribed(folder, container.container_name):
        container.upload_blob("new.csv", b"after")
        delivered(folder, "new.csv")
    assert events(folder, "old.csv") == []
