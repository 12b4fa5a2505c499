"""The blobs webhook reads a storage event's blob from data.url, as the blobs extension does, and filters
nothing: partial writes, zero-byte blobs and other event types are all passed on."""
import pytest

from devhost.eventgrid import BadDelivery, blob_path


def event(url, **data):
    return {"id": "e", "eventType": "Microsoft.Storage.BlobCreated",
            "subject": "/blobServices/default/containers/incoming/blobs/2026/diabetes.csv",
            "data": {"api": "PutBlob", "contentLength": 524288, "url": url, **data}}


@pytest.mark.parametrize("url", ["https://acct.blob.core.windows.net/incoming/2026/diabetes.csv",
                                 "http://127.0.0.1:10000/devstoreaccount1/incoming/2026/diabetes.csv",
                                 "http://localhost:10000/devstoreaccount1/incoming/2026/diabetes.csv"])
def test_the_blob_comes_from_the_url_in_either_url_style(url):
    assert blob_path(event(url)) == ("incoming", "2026/diabetes.csv")


@pytest.mark.parametrize("data", [{"api": "CreateFile", "contentLength": 0}, {"api": "PutBlock"},
                                  {"api": "SftpCreate"}, {"contentLength": 0}])
def test_no_api_or_size_is_filtered_out(data):
    assert blob_path(event("https://acct.blob.core.windows.net/incoming/a%20b.csv", **data)) == ("incoming", "a b.csv")


@pytest.mark.parametrize("url", [None, "https://acct.blob.core.windows.net/incoming", "not a url"])
def test_an_event_without_a_blob_url_is_a_bad_delivery(url):
    with pytest.raises(BadDelivery):
        blob_path(event(url))
