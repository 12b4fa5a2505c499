"""The seams between the use cases and the real systems: one Protocol per kind of I/O.

Handlers depend on these only; `bootstrap` picks the adapters. Every value crossing a port is a plain,
frozen record, so unit tests can run the handlers on in-memory fakes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Mapping, Protocol, Sequence


# ---------------------------------------------------------------- ML backend (Azure ML or local)

class RunStatus:
    """Azure ML run status strings (azureml.core.Run.get_status())."""

    NOT_STARTED = "NotStarted"
    QUEUED = "Queued"
    PREPARING = "Preparing"
    RUNNING = "Running"
    FINALIZING = "Finalizing"
    COMPLETED = "Completed"
    FAILED = "Failed"
    CANCELED = "Canceled"

    TERMINAL = frozenset({COMPLETED, FAILED, CANCELED})


@dataclass(frozen=True)
class PublishedPipelineRef:
    name: str               # pipeline definition name, e.g. "diabetes_training"
    version: str            # content hash of the definition
    pipeline_id: str        # Azure ML published pipeline id (local: the version)
    endpoint: str           # PipelineEndpoint name
    newly_published: bool = False


@dataclass(frozen=True)
class RunRef:
    run_id: str
    experiment: str
    tags: Mapping[str, str] = field(default_factory=dict)
    url: str | None = None  # portal or MLflow UI link, when the backend has one


@dataclass(frozen=True)
class StepRunInfo:
    name: str
    run_id: str
    status: str
    metrics: Mapping[str, Any] = field(default_factory=dict)
    log_location: str | None = None   # where a person reads the step's log
    reused: bool = False


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    status: str                               # a RunStatus value
    tags: Mapping[str, str] = field(default_factory=dict)
    steps: Sequence[StepRunInfo] = ()
    error: str | None = None

    @property
    def metrics(self) -> dict[str, Any]:
        """Every step's metrics in one mapping (later steps win on a clash)."""
        merged: dict[str, Any] = {}
        for step in self.steps:
            merged.update(step.metrics)
        return merged

    def step(self, name: str) -> StepRunInfo | None:
        return next((s for s in self.steps if s.name == name), None)

    def model_step(self, name: str) -> StepRunInfo:
        """The step that saved the model; LookupError when the run has none of that name."""
        step = self.step(name)
        if step is None:
            raise LookupError(f"run {self.run_id} has no step named {name!r}: set RETRAINER_MODEL_STEP to the "
                              "step that saves the model")
        return step

    def failed_step(self) -> StepRunInfo | None:
        return next((s for s in self.steps if s.status == RunStatus.FAILED), None)


@dataclass(frozen=True)
class ModelRef:
    name: str
    version: int
    run_id: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    properties: Mapping[str, str] = field(default_factory=dict)


class MLBackend(Protocol):
    def ensure_published(self, pipeline_name: str) -> PublishedPipelineRef:
        """Find the endpoint's default pipeline; publish (and make default) when the version differs.
        Idempotent, cached per process."""

    def submit(self, ref: PublishedPipelineRef, parameters: Mapping[str, str], experiment: str,
               tags: Mapping[str, str]) -> RunRef:
        """Submit a run. `parameters["input_data"]` is a path on the configured datastore (a file or a
        folder); the adapter binds it as a DataPath. Tags carry the idempotency key."""

    def find_run(self, tag_key: str, tag_value: str) -> RunRef | None:
        """The run carrying this tag, if any: closes the crash window between submit and record."""

    def get_run(self, run_id: str) -> RunInfo: ...

    def register_model(self, run: RunInfo, name: str, path: str, tags: Mapping[str, str],
                       properties: Mapping[str, str]) -> ModelRef:
        """Register the file at `path` of the run (see Settings.model_step / model_path)."""

    def current_model(self, name: str) -> ModelRef | None:
        """The latest version of the model: the champion the gate compares against."""

    def find_model(self, name: str, run_id: str) -> ModelRef | None:
        """A version of `name` already registered from this run (registration idempotency)."""


# ---------------------------------------------------------------- ledger (Azure Table Storage)

@dataclass(frozen=True)
class LedgerEntry:
    """One row: an idempotency key and the lineage it accumulated (blob -> run -> model -> notification).

    `state` is one of the State values; `fields` holds the lineage (blob, etag, run_id, pipeline_version,
    model_version, decision, reason, notified types, ...). `etag` is the storage ETag for optimistic
    concurrency; adapters fill it, handlers pass it back unchanged.
    """

    key: str
    kind: str                       # "blob" | "timer" | "manual" | "event"
    state: str
    created: datetime
    updated: datetime
    fields: Mapping[str, Any] = field(default_factory=dict)
    etag: str | None = None


class State:
    CLAIMED = "claimed"             # key taken, nothing submitted yet
    SUBMITTED = "submitted"         # run id recorded, waiting for its event
    REJECTED = "rejected"           # data file refused by validation
    NO_NEW_DATA = "no_new_data"     # a scheduled tick with nothing to do
    REGISTERED = "registered"       # run succeeded, model version registered
    MODEL_REJECTED = "model_rejected"  # run succeeded, gate said no
    FAILED = "failed"               # run failed or was cancelled
    HANDLED = "handled"             # an event id already processed (kind "event")

    FINAL = frozenset({REJECTED, NO_NEW_DATA, REGISTERED, MODEL_REJECTED, FAILED, HANDLED})


class PipelineNotPublished(LookupError):
    """The pipeline this deployment expects is not the endpoint's default (or there is no endpoint, or the
    deployment does not say which version it expects): nothing is submitted; the message says what to run."""


class ConcurrencyError(Exception):
    """The row changed since it was read (ETag mismatch): reread and decide again."""


@dataclass(frozen=True)
class Claim:
    won: bool                 # True: this caller inserted the row and owns the key
    entry: LedgerEntry        # the row as stored (the existing one when won is False)


class Ledger(Protocol):
    def claim(self, key: str, kind: str, fields: Mapping[str, Any]) -> Claim:
        """Insert-if-absent in state CLAIMED."""

    def get(self, key: str) -> LedgerEntry | None: ...

    def update(self, entry: LedgerEntry, state: str, fields: Mapping[str, Any]) -> LedgerEntry:
        """Set state and merge fields, only if the row still has `entry.etag`; else ConcurrencyError.
        A write that landed is this caller's even when its response was lost and the retry met the new
        ETag: the adapter recognises its own write (a write id in the row) and returns the row."""

    def find_by_run(self, run_id: str) -> LedgerEntry | None: ...

    def list_in_state(self, state: str, updated_before: datetime) -> list[LedgerEntry]: ...

    def list_unnotified(self, updated_before: datetime) -> list[LedgerEntry]:
        """Rows whose notification is pending (`notified` is False), last written before `updated_before`."""

    def recent(self, limit: int) -> list[LedgerEntry]:
        """Newest first."""


# ---------------------------------------------------------------- blob storage

@dataclass(frozen=True)
class BlobInfo:
    container: str
    name: str
    size: int
    etag: str
    last_modified: datetime
    content_md5: str | None = None


class BlobStore(Protocol):
    def properties(self, container: str, name: str) -> BlobInfo:
        """FileNotFoundError when there is no such blob (it was deleted before its trigger ran)."""

    def read_prefix(self, container: str, name: str, max_bytes: int) -> bytes:
        """At most `max_bytes` from the start of the blob; never the whole blob."""

    def list(self, container: str, prefix: str = "") -> list[BlobInfo]: ...

    def quarantine(self, container: str, name: str, reason: str) -> str:
        """Copy the blob under the quarantine container with the reason in its metadata; return the
        copy's name. The original is never deleted."""

    def download(self, container: str, name: str, destination: str) -> None:
        """Stream the blob to a local file (the local backend's DataPath resolution)."""

    def upload(self, container: str, name: str, source: str) -> None:
        """Write a local file as a blob, creating the container if needed (the local backend's PipelineData
        outputs, placed where Azure ML places them)."""


# ---------------------------------------------------------------- the host's work queues

@dataclass(frozen=True)
class PoisonedMessage:
    """A message the host gave up on after host.json's maxDequeueCount attempts, in `<queue>-poison`."""

    queue: str                  # the poison queue it sits in
    id: str
    inserted: datetime | None
    body: str


class WorkQueues(Protocol):
    def poisoned(self, limit: int) -> list[PoisonedMessage]:
        """Up to `limit` messages of each work queue's poison queue, left where they are (a peek)."""

    def depths(self) -> dict[str, int]:
        """The approximate message count of every work queue and poison queue."""


# ---------------------------------------------------------------- notifications

class Notifier(Protocol):
    def publish(self, event_id: str, event_type: str, subject: str, data: Mapping[str, Any]) -> None:
        """Send one CloudEvent. `event_id` is deterministic per effect, so a resend after a crash carries
        the same id and receivers can drop it."""
