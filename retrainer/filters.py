"""Which Event Grid events the app acts on, written once.

The app applies these to every delivery (the Functions host filters nothing: the blobs extension queues
every event of a batch, BlobsExtensionConfigProvider), and infra/ writes the same rules into the Event
Grid subscriptions, so most events are never delivered at all. `tests/infra` holds the two equal.

BlobCreated fires for more than finished files:
https://learn.microsoft.com/azure/event-grid/event-schema-blob-storage#list-of-events-for-blob-rest-apis
- hierarchical-namespace accounts raise it for `CreateFile` with 0 bytes, then `FlushWithClose` with the data;
- SFTP raises `SftpCreate` when a file opens and `SftpCommit` when it is complete;
- `CopyBlob` fires when a copy is accepted (the service completes small copies synchronously; a large
  asynchronous copy's validation then reads what is there, and a half-copied file fails it clearly).
Azure ML writes PipelineData under `azureml/<run id>/<output>/` on the datastore it is given
(azureml/pipeline/core/builder.py, `PipelineData._get_path_on_datastore`): never training data.
"""
from __future__ import annotations

from dataclasses import dataclass

from retrainer.events import BLOB_CREATED, RUN_COMPLETED, RUN_STATUS_CHANGED
from retrainer.ports import RunStatus

# The storage APIs after which a blob holds a whole file.
FILE_COMPLETE_APIS: tuple[str, ...] = ("PutBlob", "PutBlockList", "CopyBlob", "FlushWithClose", "SftpCommit")
# Folders of the watched container that never hold new data: Azure ML's own outputs.
IGNORED_FOLDERS: tuple[str, ...] = ("azureml/",)
# RunStatusChanged fires for every status; these end a run.
FINAL_RUN_STATUSES: tuple[str, ...] = tuple(sorted(RunStatus.TERMINAL))
RUN_EVENT_TYPES: tuple[str, ...] = (RUN_COMPLETED, RUN_STATUS_CHANGED)


@dataclass(frozen=True)
class BlobEventFilter:
    """The BlobCreated events of one watched container that can start a training."""

    container: str
    quarantine_container: str

    event_types: tuple[str, ...] = (BLOB_CREATED,)
    apis: tuple[str, ...] = FILE_COMPLETE_APIS
    min_size_exclusive: int = 0             # data.contentLength must be greater than this

    @property
    def subject_begins_with(self) -> str:
        return blob_subject(self.container, "")

    @property
    def subject_not_begins_with(self) -> tuple[str, ...]:
        """Ignored folders, and the quarantine copies when quarantine shares the watched container."""
        folders = list(IGNORED_FOLDERS)
        if self.quarantine_container == self.container:
            folders.append(f"{self.quarantine_container}/")
        return tuple(blob_subject(self.container, folder) for folder in folders)

    def ignored_folder(self, name: str) -> str | None:
        """The folder that makes a blob of the watched container never training data, if any."""
        subject = blob_subject(self.container, name)
        return next((prefix[len(self.subject_begins_with):] for prefix in self.subject_not_begins_with
                     if subject.startswith(prefix)), None)

    def ignore(self, event_type: str, subject: str, api: str, size: int) -> str | None:
        """Why this event starts no training, or None when it may."""
        if event_type not in self.event_types:
            return f"event type {event_type} is not {' or '.join(self.event_types)}"
        if not subject.startswith(self.subject_begins_with):
            return f"{subject} is outside container {self.container!r}"
        folder = self.ignored_folder(subject[len(self.subject_begins_with):])
        if folder:
            return f"{subject} is under {folder} (not training data)"
        if api not in self.apis:
            return f"api {api} does not complete a file (only {', '.join(self.apis)} do)"
        if size <= self.min_size_exclusive:
            return "the blob is empty (a file being created; its completing event follows)"
        return None


def blob_subject(container: str, name: str) -> str:
    return f"/blobServices/default/containers/{container}/blobs/{name}"
