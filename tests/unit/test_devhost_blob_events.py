"""The dev host's reading of BlobCreated posts: only a completed, non-empty file triggers."""
import pytest

from devhost.eventgrid import blob_created

SUBJECT = "/blobServices/default/containers/incoming/blobs/2026/diabetes.csv"


def event(**data):
    return {"eventType": "Microsoft.Storage.BlobCreated", "subject": SUBJECT,
            "data": {"api": "PutBlob", "contentLength": 524288, **data}}


@pytest.mark.parametrize("api", ["PutBlob", "PutBlockList", "CopyBlob", "FlushWithClose"])
def test_a_file_completing_api_triggers(api):
    assert blob_created(event(api=api)) == ("incoming", "2026/diabetes.csv")


@pytest.mark.parametrize("data", [{"api": "CreateFile"}, {"api": "PutBlock"}, {"contentLength": 0}])
def test_a_partial_write_or_a_zero_byte_blob_does_not(data):
    assert blob_created(event(**data)) is None


def test_other_event_types_are_not_blob_creations():
    assert blob_created({"eventType": "Microsoft.Storage.BlobDeleted", "subject": SUBJECT, "data": {}}) is None
