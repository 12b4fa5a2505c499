"""The blob store against Azurite: properties, bounded prefix reads, listing, quarantine, download."""
from __future__ import annotations

import base64
import hashlib
import uuid
from urllib.parse import unquote

import pytest
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient

from devhost.azurite import ACCOUNT, ACCOUNT_KEY
from retrainer.adapters.blob_store import AzureBlobStore

CSV = b"PatientID,Pregnancies,PlasmaGlucose\n" + b"".join(b"%d,1,80\n" % i for i in range(20000))


@pytest.fixture
def service(storage_connection) -> BlobServiceClient:
    return BlobServiceClient.from_connection_string(storage_connection)


@pytest.fixture
def container(service) -> str:
    name = "incoming" + uuid.uuid4().hex[:10]
    service.create_container(name)
    return name


@pytest.fixture
def quarantine_container() -> str:
    return "quarantine" + uuid.uuid4().hex[:10]


@pytest.fixture
def store(storage_connection, quarantine_container) -> AzureBlobStore:
    return AzureBlobStore.from_connection_string(storage_connection, quarantine_container)


def upload(service, container, name, data=CSV):
    service.get_blob_client(container, name).upload_blob(data, overwrite=True)


def test_properties(service, container, store):
    upload(service, container, "diabetes.csv")
    info = store.properties(container, "diabetes.csv")
    sdk = service.get_blob_client(container, "diabetes.csv").get_blob_properties()
    assert (info.container, info.name, info.size) == (container, "diabetes.csv", len(CSV))
    assert info.etag == sdk.etag.strip('"') and not info.etag.startswith('"')  # as Event Grid's eTag
    assert info.last_modified.tzinfo is not None
    assert info.content_md5 == base64.b64encode(hashlib.md5(CSV).digest()).decode()


def test_properties_of_a_missing_blob_is_file_not_found(container, store):
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        store.properties(container, "nope.csv")


def test_read_prefix_reads_at_most_max_bytes(storage_connection, service, container, quarantine_container):
    received: list[int] = []
    counting = BlobServiceClient.from_connection_string(
        storage_connection, raw_response_hook=lambda r: received.append(len(r.http_response.body() or b"")))
    store = AzureBlobStore(counting, quarantine_container)
    upload(service, container, "big.csv")
    upload(service, container, "empty.csv", b"")

    assert store.read_prefix(container, "big.csv", 100) == CSV[:100]
    assert sum(received) == 100  # the rest of the blob never crossed the wire
    assert store.read_prefix(container, "big.csv", len(CSV) * 2) == CSV
    assert store.read_prefix(container, "empty.csv", 100) == b""
    assert store.read_prefix(container, "big.csv", 0) == b""


def test_list_with_and_without_prefix(service, container, store):
    for name in ("data/a.csv", "data/b.csv", "other/c.csv"):
        upload(service, container, name)
    assert [b.name for b in store.list(container, "data/")] == ["data/a.csv", "data/b.csv"]
    everything = store.list(container)
    assert [b.name for b in everything] == ["data/a.csv", "data/b.csv", "other/c.csv"]
    assert everything[0] == store.properties(container, "data/a.csv")
    assert store.list(container, "none/") == []


def test_quarantine_copies_with_the_reason_and_keeps_the_original(service, container, store,
                                                                   quarantine_container):
    name = "sub/ünï weird#?.csv"
    upload(service, container, name)
    original = store.properties(container, name)
    reason = "missing required columns: Age, BMI (Größe)"

    copy_name = store.quarantine(container, name, reason)

    assert copy_name == f"{container}/{name}"
    copy = service.get_blob_client(quarantine_container, copy_name)
    assert copy.download_blob().readall() == CSV
    metadata = copy.get_blob_properties().metadata
    assert unquote(metadata["reason"]) == reason
    assert metadata["reason"].isascii()  # metadata travels in HTTP headers
    assert unquote(metadata["source"]) == f"{container}/{name}"
    assert metadata["etag"] == original.etag
    # the original is untouched
    assert store.properties(container, name) == original
    assert service.get_blob_client(container, name).download_blob().readall() == CSV
    # quarantining again (a redelivered event) is harmless
    assert store.quarantine(container, name, reason) == copy_name


def test_download_streams_to_a_file_in_chunks(storage_connection, service, container, quarantine_container,
                                              tmp_path):
    small_chunks = BlobServiceClient.from_connection_string(
        storage_connection, max_single_get_size=64 * 1024, max_chunk_get_size=64 * 1024)
    store = AzureBlobStore(small_chunks, quarantine_container)
    upload(service, container, "data/diabetes.csv")
    destination = tmp_path / "datastore" / "data" / "diabetes.csv"

    store.download(container, "data/diabetes.csv", str(destination))

    assert destination.read_bytes() == CSV
    assert sorted(p.name for p in destination.parent.iterdir()) == ["diabetes.csv"]


def test_download_of_a_missing_blob_leaves_no_file(container, store, tmp_path):
    with pytest.raises(ResourceNotFoundError):
        store.download(container, "nope.csv", str(tmp_path / "nope.csv"))
    assert list(tmp_path.iterdir()) == []


def test_service_uri_with_a_credential(azurite, service, container, quarantine_container):
    store = AzureBlobStore.from_service_uri(f"http://127.0.0.1:{azurite.blob_port}/{ACCOUNT}", quarantine_container,
                                            credential=AzureNamedKeyCredential(ACCOUNT, ACCOUNT_KEY))
    upload(service, container, "diabetes.csv")
    assert store.properties(container, "diabetes.csv").size == len(CSV)
    assert store.quarantine(container, "diabetes.csv", "too large") == f"{container}/diabetes.csv"



def test_the_data_fingerprint_follows_the_bytes_when_the_service_keeps_an_md5(service, container, store):
    """A Put Blob records Content-MD5, so identical bytes uploaded again keep their fingerprint (Azure ML may
    reuse the steps); a block list records none, so every commit is new data by its ETag."""
    from retrainer import policy

    blob = service.get_blob_client(container, "a.csv")
    blob.upload_blob(CSV[:1000])
    first = store.properties(container, "a.csv")
    blob.upload_blob(CSV[:1000], overwrite=True)
    again = store.properties(container, "a.csv")
    blob.upload_blob(CSV[:1001], overwrite=True)
    changed = store.properties(container, "a.csv")
    assert first.etag != again.etag and first.content_md5
    assert policy.file_fingerprint(again) == policy.file_fingerprint(first) != policy.file_fingerprint(changed)

    staged = service.get_blob_client(container, "b.csv")
    staged.stage_block("b1", CSV[:500])
    staged.commit_block_list(["b1"])
    committed = store.properties(container, "b.csv")
    assert committed.content_md5 is None and policy.file_fingerprint(committed).startswith("etag-")


def test_upload_writes_a_file_and_creates_its_container(service, store, tmp_path):
    source = tmp_path / "data.csv"
    source.write_bytes(CSV[:100])
    target = "workspace" + uuid.uuid4().hex[:10]

    store.upload(target, "azureml/run1/prepped_data/data.csv", str(source))

    downloaded = service.get_blob_client(target, "azureml/run1/prepped_data/data.csv").download_blob().readall()
    assert downloaded == CSV[:100]
