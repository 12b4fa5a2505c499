"""In-memory fakes of the four ports, honouring their contracts (ports.py):
- Ledger: claim is insert-if-absent; update checks the ETag (ConcurrencyError), merges fields, a None value
  removes a field; `updated` comes from the shared clock so tests can make claims go stale.
- BlobStore: ETags quoted as the SDK returns them; read_prefix never returns more than asked (and records
  what was asked); quarantine copies, the original stays; a missing blob is FileNotFoundError.
- MLBackend: runs keyed by id with their tags; the test ends a run with `finish`; models get increasing
  versions; find_model finds a version by its run id.
- Notifier: records what was published; can be told to fail.
"""
from __future__ import annotations

import base64
import hashlib
import itertools
import threading
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping

from retrainer.adapters.azureml_v2 import job_name
from retrainer.policy import TAG_KEY_HASH
from retrainer.ports import (BlobInfo, Claim, ConcurrencyError, LedgerEntry, ModelRef, PoisonedMessage,
                             PublishedPipelineRef, RunInfo, RunRef, RunStatus, State, StepRunInfo)


class Clock:
    def __init__(self, start: datetime = datetime(2026, 11, 29, 2, 0, tzinfo=timezone.utc)):
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class FakeLedger:
    def __init__(self, clock: Clock):
        self._clock = clock
        self._rows: dict[str, LedgerEntry] = {}
        self._order: list[str] = []
        self._etags = itertools.count(1)
        self._lock = threading.Lock()

    def claim(self, key: str, kind: str, fields: Mapping[str, Any]) -> Claim:
        with self._lock:
            if key in self._rows:
                return Claim(won=False, entry=self._rows[key])
            now = self._clock()
            entry = LedgerEntry(key, kind, State.CLAIMED, now, now, _merge({}, fields), self._etag())
            self._rows[key] = entry
            self._order.append(key)
            return Claim(won=True, entry=entry)

    def get(self, key: str) -> LedgerEntry | None:
        return self._rows.get(key)

    def update(self, entry: LedgerEntry, state: str, fields: Mapping[str, Any]) -> LedgerEntry:
        with self._lock:
            current = self._rows.get(entry.key)
            if current is None or current.etag != entry.etag:
                raise ConcurrencyError(f"ledger row {entry.key!r} changed since it was read")
            updated = replace(current, state=state, updated=self._clock(),
                              fields=_merge(current.fields, fields), etag=self._etag())
            self._rows[entry.key] = updated
            return updated

    def find_by_run(self, run_id: str) -> LedgerEntry | None:
        return next((self._rows[k] for k in self._order if self._rows[k].fields.get("run_id") == run_id), None)

    def list_in_state(self, state: str, updated_before: datetime) -> list[LedgerEntry]:
        return [e for e in self._rows.values() if e.state == state and e.updated < updated_before]

    def list_unnotified(self, updated_before: datetime) -> list[LedgerEntry]:
        return [e for e in self._rows.values() if e.fields.get("notified") is False and e.updated < updated_before]

    def recent(self, limit: int) -> list[LedgerEntry]:
        return [self._rows[k] for k in reversed(self._order)][:limit]

    # test helpers
    def touch(self, key: str, **fields: Any) -> LedgerEntry:
        """Change a row behind a holder's back (another worker's write)."""
        entry = self._rows[key]
        return self.update(entry, entry.state, fields)

    def _etag(self) -> str:
        return f'W/"{next(self._etags)}"'


def _merge(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(old)
    for name, value in new.items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = value
    return merged


class FakeBlobStore:
    def __init__(self, clock: Clock, quarantine_container: str = "quarantine"):
        self._clock = clock
        self._blobs: dict[tuple[str, str], tuple[bytes, BlobInfo]] = {}
        self._versions = itertools.count(1)
        self.quarantine_container = quarantine_container
        self.quarantined: dict[str, str] = {}     # copy name -> reason
        self.prefix_reads: list[int] = []         # max_bytes of every read_prefix

    def put(self, container: str, name: str, data: bytes, last_modified: datetime | None = None, *,
            content_md5: bool = True) -> BlobInfo:
        """`content_md5`: whether the service recorded one (it does for a Put Blob, not for a block list)."""
        md5 = base64.b64encode(hashlib.md5(data).digest()).decode() if content_md5 else None
        info = BlobInfo(container, name, len(data), f'"0x8DC{next(self._versions):011X}"',
                        last_modified or self._clock(), md5)
        self._blobs[(container, name)] = (data, info)
        return info

    def properties(self, container: str, name: str) -> BlobInfo:
        try:
            return self._blobs[(container, name)][1]
        except KeyError:
            raise FileNotFoundError(f"no blob {container}/{name}") from None

    def read_prefix(self, container: str, name: str, max_bytes: int) -> bytes:
        self.prefix_reads.append(max_bytes)
        return self._data(container, name)[:max_bytes]

    def list(self, container: str, prefix: str = "") -> list[BlobInfo]:
        return [info for (c, n), (_, info) in sorted(self._blobs.items()) if c == container and n.startswith(prefix)]

    def quarantine(self, container: str, name: str, reason: str) -> str:
        copy = f"{container}/{name}"
        self._blobs[(self.quarantine_container, copy)] = self._blobs[(container, name)]
        self.quarantined[copy] = reason
        return copy

    def download(self, container: str, name: str, destination: str) -> None:
        with open(destination, "wb") as file:
            file.write(self._data(container, name))

    def upload(self, container: str, name: str, source: str) -> None:
        with open(source, "rb") as file:
            self.put(container, name, file.read())

    def exists(self, container: str, name: str) -> bool:
        return (container, name) in self._blobs

    def _data(self, container: str, name: str) -> bytes:
        try:
            return self._blobs[(container, name)][0]
        except KeyError:
            raise FileNotFoundError(f"no blob {container}/{name}") from None


class FakeBackend:
    """Either SDK's behaviour where the handlers can tell them apart (`sdk`):
    - "v1" (azureml_v1): every submit makes a new run with a service-chosen id; runs are found by any tag.
    - "v2" (azureml_v2): the run is the job named after the key digest; a second submit for the key makes no
      second run (the service refuses the name, the adapter returns the job); runs are found by that digest only.
    """

    def __init__(self, version: str = "v1" * 8, sdk: str = "v1"):
        self.sdk = sdk
        self.ref = PublishedPipelineRef("diabetes_training", version, f"pp-{version}", "diabetes-training")
        self.runs: dict[str, RunInfo] = {}
        self.submissions: list[tuple[Mapping[str, str], Mapping[str, str]]] = []   # (parameters, tags)
        self.models: dict[str, list[ModelRef]] = {}
        self.fail_submit_after_run = False    # simulate a crash after the run exists, before it is returned
        self._ids = itertools.count(1)

    def ensure_published(self, pipeline_name: str) -> PublishedPipelineRef:
        return self.ref

    def submit(self, ref: PublishedPipelineRef, parameters: Mapping[str, str], experiment: str,
               tags: Mapping[str, str]) -> RunRef:
        if self.sdk == "v2":
            run_id = job_name(tags[TAG_KEY_HASH])
            if run_id in self.runs:
                return RunRef(run_id, experiment, dict(self.runs[run_id].tags))
        else:
            run_id = f"run-{next(self._ids)}"
        self.runs[run_id] = RunInfo(run_id, RunStatus.RUNNING, dict(tags))
        self.submissions.append((dict(parameters), dict(tags)))
        if self.fail_submit_after_run:
            raise ConnectionError("connection reset after the run was created")
        return RunRef(run_id, experiment, dict(tags))

    def find_run(self, tag_key: str, tag_value: str) -> RunRef | None:
        if self.sdk == "v2":
            if tag_key != TAG_KEY_HASH:
                raise ValueError(f"the SDK v2 backend finds runs by {TAG_KEY_HASH!r} only")
            run = self.runs.get(job_name(tag_value))
            return RunRef(run.run_id, "diabetes-retraining", dict(run.tags)) if run else None
        for run in self.runs.values():
            if run.tags.get(tag_key) == tag_value:
                return RunRef(run.run_id, "diabetes-retraining", dict(run.tags))
        return None

    def get_run(self, run_id: str) -> RunInfo:
        return self.runs[run_id]

    def register_model(self, run: RunInfo, name: str, path: str, tags: Mapping[str, str],
                       properties: Mapping[str, str]) -> ModelRef:
        versions = self.models.setdefault(name, [])
        model = ModelRef(name, len(versions) + 1, run.run_id, dict(tags), dict(properties))
        versions.append(model)
        return model

    def current_model(self, name: str) -> ModelRef | None:
        versions = self.models.get(name)
        return versions[-1] if versions else None

    def find_model(self, name: str, run_id: str) -> ModelRef | None:
        return next((m for m in self.models.get(name, []) if m.run_id == run_id), None)

    # test helpers
    def finish(self, run_id: str, status: str = RunStatus.COMPLETED, metrics: Mapping[str, Any] | None = None,
               failed_step: str | None = None) -> RunInfo:
        if status == RunStatus.COMPLETED:
            steps = (StepRunInfo("prep", run_id + "-prep", status),
                     StepRunInfo("train", run_id + "-train", status, metrics or {}))
        else:
            steps = (StepRunInfo("prep", run_id + "-prep", RunStatus.COMPLETED),
                     StepRunInfo(failed_step or "train", run_id + "-train", RunStatus.FAILED,
                                 log_location=f"logs/{run_id}/train/std_log.txt"))
        info = RunInfo(run_id, status, self.runs[run_id].tags, steps,
                       error=None if status == RunStatus.COMPLETED else "step failed")
        self.runs[run_id] = info
        return info

    def add_champion(self, name: str, metric: str, value: float) -> ModelRef:
        versions = self.models.setdefault(name, [])
        model = ModelRef(name, len(versions) + 1, f"old-run-{len(versions)}", {}, {metric: repr(value)})
        versions.append(model)
        return model


class FakeNotifier:
    def __init__(self):
        self.published: list[tuple[str, str, str, Mapping[str, Any]]] = []   # (id, type, subject, data)
        self.fail = False

    def publish(self, event_id: str, event_type: str, subject: str, data: Mapping[str, Any]) -> None:
        if self.fail:
            raise ConnectionError("event grid unreachable")
        self.published.append((event_id, event_type, subject, dict(data)))

    def types(self) -> list[str]:
        return [event_type for _, event_type, _, _ in self.published]


class FakeWorkQueues:
    """The host's work queues: poisoned messages stay until removed, as in `<queue>-poison`."""

    def __init__(self):
        self.poison: list[PoisonedMessage] = []

    def poisoned(self, limit: int) -> list[PoisonedMessage]:
        return self.poison[:limit]

    def depths(self) -> dict[str, int]:
        return {"retrainer-blob-events-poison": len(self.poison)}
