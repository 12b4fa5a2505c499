import pytest

from retrainer.filters import BLOB_CREATED, BlobEventFilter, blob_subject

FILTER = BlobEventFilter(container="incoming", quarantine_container="quarantine")


def subject(name: str, container: str = "incoming") -> str:
    return blob_subject(container, name)


@pytest.mark.parametrize("api", ["PutBlob", "PutBlockList", "CopyBlob", "FlushWithClose", "SftpCommit"])
def test_a_completed_non_empty_file_passes(api):
    assert FILTER.ignore(BLOB_CREATED, subject("2026/a.csv"), api, 10) is None


@pytest.mark.parametrize("api,size,why", [
    ("CreateFile", 0, "does not complete a file"),      # hierarchical namespace: the file is opened
    ("SftpCreate", 0, "does not complete a file"),
    ("PutBlob", 0, "empty"),
    ("FlushWithClose", 0, "empty"),
])
def test_events_that_do_not_complete_a_file_are_ignored(api, size, why):
    assert why in FILTER.ignore(BLOB_CREATED, subject("a.csv"), api, size)


def test_azure_ml_outputs_and_other_containers_are_ignored():
    assert "azureml/" in FILTER.ignore(BLOB_CREATED, subject("azureml/1234/prepped_data/data.csv"), "PutBlob", 9)
    assert "outside" in FILTER.ignore(BLOB_CREATED, subject("a.csv", "other"), "PutBlob", 9)
    assert "not" in FILTER.ignore("Microsoft.Storage.BlobDeleted", subject("a.csv"), "DeleteBlob", 9)


def test_quarantine_in_the_watched_container_is_ignored_too():
    shared = BlobEventFilter(container="incoming", quarantine_container="incoming")
    assert shared.ignore(BLOB_CREATED, subject("incoming/a.csv"), "CopyBlob", 9)
    assert FILTER.subject_not_begins_with == (subject("azureml/"),)
