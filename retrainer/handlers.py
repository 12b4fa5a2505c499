"""The use cases: data arrived, retrain due, retrain requested, run finished, reconcile, and the lineage reads.

Plain functions over `Deps` (the ports, the settings, a clock). Events arrive at least once and in any
order, so each effect is guarded:
- a key is claimed in the ledger (insert-if-absent) before anything happens; a duplicate has no effect;
- a submit is preceded by `find_run` on the key tag, so a retry after a crash never makes a second run;
- registration looks for a model version of the run first;
- a notification id is derived from (key, type), and the row records whether it went out, so a resend
  after a crash carries the same id;
- a claim, a finish and a send are leases in the row: one invocation at a time does each, a failing one
  gives its lease back so the retry works at once, and one that died is replaced after the lease.
"""
from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterator, Mapping

from retrainer import intake, policy
from retrainer.events import BlobCreated, DomainEvent, RunEvent
from retrainer.ports import (BlobInfo, BlobStore, ConcurrencyError, Ledger, LedgerEntry, MLBackend, Notifier,
                             PipelineNotPublished, PoisonedMessage, RunInfo, RunStatus, State, WorkQueues)
from retrainer.settings import Settings
from retrainer.validation import PREFIX_BYTES, Rejection, check_data_file, check_name

log = logging.getLogger("retrainer")

MAX_ATTEMPTS = 3        # rereads after a ConcurrencyError before giving the event back to its retry

# notification types
DATA_REJECTED = "retrainer.data.rejected"
MODEL_REGISTERED = "retrainer.model.registered"
MODEL_REJECTED = "retrainer.model.rejected"
RUN_FAILED = "retrainer.run.failed"
PIPELINE_UNAVAILABLE = "retrainer.pipeline.unavailable"
WORK_POISONED = "retrainer.work.poisoned"

POISON_PEEK = 32        # poisoned messages reported per queue and sweep (the rest, at the next sweeps)


class Action:
    SUBMITTED = "submitted"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"
    IGNORED = "ignored"
    REGISTERED = "registered"
    MODEL_REJECTED = "model_rejected"
    FAILED = "failed"
    NO_NEW_DATA = "no_new_data"
    RUNNING = "running"         # reconcile: the run has not ended yet


@dataclass
class Deps:
    settings: Settings
    ledger: Ledger
    blobs: BlobStore
    backend: MLBackend
    notifier: Notifier
    queues: WorkQueues
    contract: Mapping[str, Mapping[str, Any]]     # the pipeline's data contract (pipeline_defs/)
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(timezone.utc))


@dataclass(frozen=True)
class Outcome:
    action: str                 # an Action value
    key: str | None             # the ledger key, when there is one
    detail: Mapping[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------- data arrived / retrain requested

def data_arrived(deps: Deps, container: str, name: str, trigger: str = "blob") -> Outcome:
    """A data file landed: validate it from a bounded prefix, then submit the pipeline on it, once."""
    folder = policy.blob_filter(deps.settings).ignored_folder(name) if container == deps.settings.incoming_container \
        else None
    if folder:
        return _done(Action.IGNORED, None, f"blob {container}/{name} is under {folder}: not training data")
    try:
        info = deps.blobs.properties(container, name)
    except FileNotFoundError:
        return _done(Action.IGNORED, None, f"blob {container}/{name} no longer exists")
    key = policy.blob_key(container, name, info.etag)
    return _with_claim(deps, key, "blob", _file_fields(info, trigger),
                       lambda entry: _validate_and_submit(deps, entry, info, trigger))


def retrain_requested(deps: Deps, data_path: str, request_id: str | None = None) -> Outcome:
    """POST /api/retrain: `data_path` is '<container>/<blob or folder>' in the incoming container.
    `request_id` (the client's Idempotency-Key) makes a retried request the same request; without one,
    every call is new work."""
    container, _, path = data_path.strip().partition("/")
    path = path.rstrip("/")
    incoming = deps.settings.incoming_container
    if container != incoming:
        return _done(Action.REJECTED, None, f"data_path {data_path!r} is not in container {incoming!r}; "
                     f"send '{incoming}/<blob or folder>'", reason_code="bad_path")
    if not path:
        return _done(Action.REJECTED, None, f"data_path {data_path!r} names no blob or folder; send "
                     f"'{incoming}/<blob or folder>'", reason_code="bad_path")
    rejection = check_name(path)
    if rejection:
        return _done(Action.REJECTED, None, rejection.message, reason_code=rejection.reason_code)
    return _requested(deps, policy.manual_key(request_id or uuid.uuid4().hex), container, path)


def _requested(deps: Deps, key: str, container: str, path: str) -> Outcome:
    # one listing answers both "is it a blob" and "is it a folder", and needs no adapter-specific not-found error
    listed = deps.blobs.list(container, path)
    info = next((b for b in listed if b.name == path), None)
    if info is not None:
        return _with_claim(deps, key, "manual", _file_fields(info, "manual"),
                           lambda entry: _validate_and_submit(deps, entry, info, "manual"))
    files = policy.training_files((b for b in listed if b.name.startswith(path + "/")), deps.settings)
    if not files:
        return _done(Action.REJECTED, None, f"no data at {container}/{path}: give an existing blob or a folder "
                     "holding CSV files", reason_code="not_found")
    return _with_claim(deps, key, "manual", {"trigger": "manual", "container": container, "data_path": path,
                                             "files": len(files)},
                       lambda entry: _submit(deps, entry, path, policy.folder_fingerprint(files), "manual"))


def _file_fields(info: BlobInfo, trigger: str) -> dict[str, Any]:
    return {"trigger": trigger, "container": info.container, "blob": info.name,
            "blob_etag": policy.normalize_etag(info.etag), "size": info.size, "data_path": info.name}


def _validate_and_submit(deps: Deps, entry: LedgerEntry, info: BlobInfo, trigger: str) -> Outcome:
    settings = deps.settings
    readable = check_name(info.name) is None and 0 < info.size <= settings.max_file_bytes
    prefix = deps.blobs.read_prefix(info.container, info.name, PREFIX_BYTES) if readable else b""
    rejection = check_data_file(info.name, info.size, prefix, max_bytes=settings.max_file_bytes,
                                contract=deps.contract)
    if rejection:
        return _reject_data(deps, entry, info, rejection)
    return _submit(deps, entry, info.name, policy.file_fingerprint(info), trigger, blob=info.name, etag=info.etag)


def _reject_data(deps: Deps, entry: LedgerEntry, info: BlobInfo, rejection: Rejection) -> Outcome:
    quarantined = deps.blobs.quarantine(info.container, info.name, rejection.message)
    final = _transition(deps, entry, State.REJECTED, {
        "reason_code": rejection.reason_code, "reason": rejection.message, "quarantine": quarantined,
        **_pending_notification(deps, entry.key, DATA_REJECTED)})
    if final is None:
        return _settled_elsewhere(deps, entry.key)
    _send_notification(deps, final)
    return _done(Action.REJECTED, entry.key, rejection.message, level=logging.WARNING,
                 reason_code=rejection.reason_code, quarantine=quarantined)


def _submit(deps: Deps, entry: LedgerEntry, data_path: str, data_version: str, trigger: str, *,
            blob: str | None = None, etag: str | None = None, extra: Mapping[str, Any] | None = None) -> Outcome:
    settings = deps.settings
    try:
        ref = deps.backend.ensure_published(settings.pipeline)
    except PipelineNotPublished as error:
        _alert_pipeline_unavailable(deps, error)
        raise
    # a crashed attempt may have submitted already
    run = deps.backend.find_run(policy.TAG_KEY_HASH, policy.key_digest(entry.key))
    if run is None:
        tags = policy.run_tags(entry.key, trigger, ref.version, blob=blob, etag=etag)
        run = deps.backend.submit(ref, {"input_data": data_path, "input_data_version": data_version},
                                  settings.experiment, tags)
    recorded = _transition(deps, entry, State.SUBMITTED, {
        "run_id": run.run_id, "experiment": run.experiment, "run_url": run.url, "pipeline_version": ref.version,
        "data_version": data_version,
        "pipeline_id": ref.pipeline_id, "endpoint": ref.endpoint, **(extra or {})})
    if recorded is None:        # the run's event (or reconcile) got there first: the run is recorded
        return _settled_elsewhere(deps, entry.key)
    return _done(Action.SUBMITTED, entry.key, f"run {run.run_id} on {data_path or '<container root>'} "
                 f"(pipeline {ref.name} {ref.version})", run_id=run.run_id, pipeline_version=ref.version)


# ---------------------------------------------------------------- retrain due (timer)

def retrain_due(deps: Deps, schedule_name: str, scheduled_time: datetime, past_due: bool = False) -> Outcome:
    """A schedule came due: retrain on the dataset folder when it holds data newer than the last training.
    The key is the scheduled time, so a tick delivered again (past-due, restart) counts once."""
    key = policy.timer_key(schedule_name, scheduled_time)
    return _with_claim(deps, key, "timer", {"trigger": "timer", "schedule": schedule_name,
                                            "scheduled_time": scheduled_time, "past_due": past_due},
                       lambda entry: _retrain_if_new_data(deps, entry))


def _retrain_if_new_data(deps: Deps, taken: LedgerEntry) -> Outcome:
    settings, key = deps.settings, taken.key
    folder = settings.dataset_prefix.rstrip("/")
    files = policy.training_files(deps.blobs.list(settings.incoming_container, settings.dataset_prefix), settings)
    newest = policy.newest_data(files)
    watermark = _watermark(deps)
    if not policy.has_new_data(newest, watermark):
        final = _transition(deps, taken, State.NO_NEW_DATA, {"data_newest": newest, "watermark": watermark})
        if final is None:
            return _settled_elsewhere(deps, key)
        return _done(Action.NO_NEW_DATA, key, f"nothing in {settings.incoming_container}/{folder} is newer than "
                     f"{watermark.isoformat() if watermark else 'the last training'}")
    return _submit(deps, taken, folder, policy.folder_fingerprint(files), "timer",
                   extra={"container": settings.incoming_container, "data_path": folder,
                          "data_newest": newest, "files": len(files)})


def _watermark(deps: Deps) -> datetime | None:
    entry = deps.ledger.get(policy.watermark_key(deps.settings.pipeline))
    value = entry.fields.get("data_newest") if entry else None
    return value if isinstance(value, datetime) else None


def _advance_watermark(deps: Deps, data_newest: datetime) -> None:
    """Record that training succeeded on data up to `data_newest` (never moves back)."""
    key = policy.watermark_key(deps.settings.pipeline)
    claim = deps.ledger.claim(key, "watermark", {"data_newest": data_newest})
    entry = claim.entry
    for _ in range(MAX_ATTEMPTS):
        current = entry.fields.get("data_newest")
        if entry.state == State.HANDLED and isinstance(current, datetime) and current >= data_newest:
            return
        try:
            # HANDLED keeps the row out of the reconcile sweep of CLAIMED rows
            deps.ledger.update(entry, State.HANDLED, {"data_newest": max(data_newest, current)
                               if isinstance(current, datetime) else data_newest})
            return
        except ConcurrencyError:
            entry = deps.ledger.get(key) or entry
    raise ConcurrencyError(f"watermark {key!r} kept changing; the event will be retried")


# ---------------------------------------------------------------- run finished

def run_finished(deps: Deps, event: DomainEvent) -> Outcome:
    """An Azure ML run event: gate, register or reject the model, or report the failure; exactly once."""
    if not isinstance(event, RunEvent):
        kind = "BlobCreated" if isinstance(event, BlobCreated) else event.type
        return _done(Action.IGNORED, None, f"event {event.id} of type {kind} is not a run event")
    reason = policy.ignore_run_event(event, deps.settings)
    if reason:
        return _done(Action.IGNORED, None, f"event {event.id}: {reason}")
    key = event.run_tags[policy.TAG_KEY]
    entry = deps.ledger.get(key)
    if entry is None:
        return _done(Action.IGNORED, key, f"run {event.run_id} carries key {key!r}, which this ledger never "
                     "claimed (another deployment on the same workspace?)", level=logging.WARNING)
    recorded = entry.fields.get("run_id")
    if recorded and recorded != event.run_id and entry.state not in State.FINAL:
        return _done(Action.IGNORED, key, f"run {event.run_id} is not the run recorded for this key ({recorded})")
    return _finish(deps, entry, event.run_id)


def _finish(deps: Deps, entry: LedgerEntry, run_id: str, info: RunInfo | None = None) -> Outcome:
    """Decide the end of `run_id` for `entry`: register, reject the model, or record the failure.
    `info`, when the caller already read the run, saves a second read."""
    for _ in range(MAX_ATTEMPTS):
        if entry.state in State.FINAL:
            return _duplicate(deps, entry)
        held = _lease_held(deps, entry.fields.get("finishing_since"))
        if held:
            return _done(Action.DUPLICATE, entry.key, f"run {run_id} is being finished by another worker "
                         f"since {held.isoformat()}")
        try:
            # a lease on the row: two deliveries of one event must not both register a model
            entry = deps.ledger.update(entry, entry.state, {"finishing_since": deps.clock(), "run_id": run_id})
            break
        except ConcurrencyError:
            entry = _reread(deps, entry)
    else:
        raise ConcurrencyError(f"ledger row {entry.key!r} kept changing; the event will be retried")

    try:
        info = info or deps.backend.get_run(run_id)
        if info.status not in RunStatus.TERMINAL:
            _release(deps, entry, {"finishing_since": None})
            return _done(Action.RUNNING, entry.key, f"run {run_id} is {info.status} per the backend; waiting")
        if info.status == RunStatus.COMPLETED:
            decided, fields, message = _decide_model(deps, entry, info)
        else:
            decided, fields, message = _run_failed(info)
    except BaseException:
        # Give the row back, so the event's redelivery is not taken for a worker still finishing it.
        _release(deps, entry, {"finishing_since": None})
        raise
    final = _settle(deps, entry, decided, {"finishing_since": None, "run_status": info.status, **fields,
                                           **_pending_notification(deps, entry.key, _NOTIFICATION[decided])})
    if final is None:
        return _settled_elsewhere(deps, entry.key)
    if decided != State.FAILED and entry.kind == "timer" and isinstance(entry.fields.get("data_newest"), datetime):
        _advance_watermark(deps, entry.fields["data_newest"])
    _send_notification(deps, final)
    action = {State.REGISTERED: Action.REGISTERED, State.MODEL_REJECTED: Action.MODEL_REJECTED,
              State.FAILED: Action.FAILED}[decided]
    level = logging.INFO if decided == State.REGISTERED else logging.WARNING
    return _done(action, entry.key, message, level=level, run_id=run_id,
                 **{k: v for k, v in fields.items() if k in ("model_version", "reason", "failed_step", "log")})


_NOTIFICATION = {State.REGISTERED: MODEL_REGISTERED, State.MODEL_REJECTED: MODEL_REJECTED,
                 State.FAILED: RUN_FAILED}


def _decide_model(deps: Deps, entry: LedgerEntry, run: RunInfo) -> tuple[str, dict[str, Any], str]:
    settings = deps.settings
    step = run.step(settings.model_step)
    metrics = dict(step.metrics) if step and step.metrics else run.metrics
    # Already registered (a crash after registering): the champion would now be this very model.
    model = deps.backend.find_model(settings.model_name, run.run_id)
    if model is None:
        champion = deps.backend.current_model(settings.model_name)
        gate = policy.quality_gate(metrics, champion, settings)
        decision = {"metric": gate.metric, "metric_value": gate.value, "champion_value": gate.champion,
                    "champion_version": champion.version if champion else None, "reason": gate.reason}
        if not gate.passed:
            return State.MODEL_REJECTED, decision, f"model of run {run.run_id} rejected: {gate.reason}"
        tags = {policy.TAG_KEY: entry.key, policy.TAG_RUN_ID: run.run_id,
                policy.TAG_DATA: f"{entry.fields.get('container', '')}/{entry.fields.get('data_path', '')}",
                policy.TAG_PIPELINE_VERSION: str(entry.fields.get("pipeline_version", ""))}
        properties = {name: _metric_text(value) for name, value in metrics.items()}
        model = deps.backend.register_model(run, settings.model_name, settings.model_path, tags, properties)
    else:
        decision = {"reason": f"version {model.version} was already registered from run {run.run_id}"}
    fields = {**decision, "model_name": model.name, "model_version": model.version}
    return State.REGISTERED, fields, f"registered {model.name} v{model.version} from run {run.run_id}: " \
                                     f"{decision['reason']}"


def _run_failed(run: RunInfo) -> tuple[str, dict[str, Any], str]:
    step = run.failed_step()
    fields = {"failed_step": step.name if step else None, "log": step.log_location if step else None,
              "error": run.error}
    where = f"step {step.name} failed; log: {step.log_location or 'not available'}" if step else \
        (run.error or f"it ended {run.status} before any step failed, and the backend recorded no reason")
    return State.FAILED, fields, f"run {run.run_id} {run.status}: {where}"


def _metric_text(value: Any) -> str:
    number = policy.metric_value(value)
    return repr(number) if number is not None else str(value)


def _release(deps: Deps, entry: LedgerEntry, fields: Mapping[str, Any]) -> None:
    """Give back a lease this invocation holds on `entry` (as read when it took it) by writing `fields`."""
    try:
        deps.ledger.update(entry, entry.state, fields)
    except ConcurrencyError:
        pass    # the row moved on; the lease simply expires


def _lease_held(deps: Deps, since: Any) -> datetime | None:
    """When a lease taken at `since` (a row's finishing or sending lease) is still held, since when."""
    if isinstance(since, datetime) and deps.clock() - since < timedelta(minutes=deps.settings.claim_lease_minutes):
        return since
    return None


# ---------------------------------------------------------------- reconcile

def reconcile(deps: Deps) -> Iterator[Outcome]:
    """Finish rows whose run ended without an event reaching us, close claims whose holder died, and send
    the notifications of final rows whose sender died: every row left behind past its bound."""
    settings, now = deps.settings, deps.clock()
    lease = timedelta(minutes=settings.claim_lease_minutes)
    for entry in deps.ledger.list_in_state(State.SUBMITTED, now - timedelta(minutes=settings.run_deadline_minutes)):
        yield _guarded(entry.key, lambda e=entry: _reconcile_submitted(deps, e))
    for entry in deps.ledger.list_in_state(State.CLAIMED, now - lease):
        if policy.claim_is_stale(entry, now, settings.claim_lease_minutes):
            yield _guarded(entry.key, lambda e=entry: _reconcile_claimed(deps, e))
    for entry in deps.ledger.list_unnotified(now - lease):
        yield _guarded(entry.key, lambda e=entry: _duplicate(deps, e))
    for message in deps.queues.poisoned(POISON_PEEK):
        yield _guarded(policy.poison_key(message.queue, message.id), lambda m=message: _report_poisoned(deps, m))


def _report_poisoned(deps: Deps, message: PoisonedMessage) -> Outcome:
    """A message the host gave up on is work not done: record it and tell people, once per message. It stays in
    its poison queue for an operator to replay (move it back to its work queue) or delete."""
    key = policy.poison_key(message.queue, message.id)
    claim = deps.ledger.claim(key, "poison", {"queue": message.queue, "message_id": message.id,
                                              "inserted": message.inserted, "body": message.body})
    stale = policy.claim_is_stale(claim.entry, deps.clock(), deps.settings.claim_lease_minutes)
    if not claim.won and not stale:     # reported, or being reported; a reporter that died is taken over
        return _duplicate(deps, claim.entry)
    reason = (f"the host gave up on a message of {message.queue.removesuffix(intake.POISON_SUFFIX)} after "
              "host.json's maxDequeueCount attempts; see the failed invocations' logs, then replay or delete it")
    final = _transition(deps, claim.entry, State.FAILED, {"reason": reason,
                                                          **_pending_notification(deps, key, WORK_POISONED)})
    if final is None:
        return _settled_elsewhere(deps, key)
    _send_notification(deps, final)
    return _done(Action.FAILED, key, reason, level=logging.ERROR)


def _guarded(key: str, work: Callable[[], Outcome]) -> Outcome:
    """One row's trouble must not stop the sweep: it is logged and the row is tried next time."""
    try:
        return work()
    except Exception as error:  # noqa: BLE001 - reported per row, retried by the next sweep
        return _done(Action.FAILED, key, f"reconcile could not settle the row: {error}",
                     level=logging.ERROR, error=str(error))


def _reconcile_submitted(deps: Deps, entry: LedgerEntry) -> Outcome:
    run_id = entry.fields.get("run_id")
    if not run_id:
        return _done(Action.IGNORED, entry.key, "submitted row without a run id")
    info = deps.backend.get_run(run_id)
    if info.status not in RunStatus.TERMINAL:
        return _done(Action.RUNNING, entry.key, f"run {run_id} is still {info.status}", run_id=run_id)
    return _finish(deps, entry, run_id, info)


def _reconcile_claimed(deps: Deps, entry: LedgerEntry) -> Outcome:
    """The holder died between claim and record: drive the use case again; `_take` finds its run or retakes."""
    fields = entry.fields
    container, path = fields.get("container"), fields.get("data_path")
    if entry.kind == "timer":
        return retrain_due(deps, fields["schedule"], fields["scheduled_time"], bool(fields.get("past_due")))
    if entry.kind == "blob" and container and fields.get("blob"):
        outcome = data_arrived(deps, container, fields["blob"], fields.get("trigger", "blob"))
        if outcome.key == entry.key:
            return outcome
        # the blob changed or went away since: this key's work can no longer be done
        final = _transition(deps, entry, State.FAILED, {"reason": f"abandoned: {outcome.detail.get('message')}"})
        return _done(Action.FAILED, entry.key, "abandoned claim closed: the blob changed or is gone") \
            if final else _settled_elsewhere(deps, entry.key)
    if entry.kind == "manual" and container and path is not None:
        return _requested(deps, entry.key, container, path)
    return _done(Action.IGNORED, entry.key, f"stale {entry.kind} claim with no data path; left as is",
                 level=logging.WARNING)


# ---------------------------------------------------------------- lineage reads (HTTP API)

def overdue(deps: Deps) -> dict[str, int]:
    """Rows past their bound, by what they wait for (the health endpoint's details): claims past the lease,
    submitted runs past the deadline, final rows whose notification is pending past the lease. Reconcile
    works on each at every sweep; a count that stays above 0 from one sweep to the next is stuck work."""
    settings, now = deps.settings, deps.clock()
    lease = timedelta(minutes=settings.claim_lease_minutes)
    deadline = timedelta(minutes=settings.run_deadline_minutes)
    return {"claimed": len(deps.ledger.list_in_state(State.CLAIMED, now - lease)),
            "submitted": len(deps.ledger.list_in_state(State.SUBMITTED, now - deadline)),
            "unnotified": len(deps.ledger.list_unnotified(now - lease))}


def queue_depths(deps: Deps) -> dict[str, int]:
    """How many messages wait in each work queue and its poison queue (the health endpoint's details)."""
    return deps.queues.depths()


def lineage(deps: Deps, key: str) -> dict[str, Any] | None:
    entry = deps.ledger.get(key)
    return None if entry is None else lineage_record(entry)


def recent_runs(deps: Deps, limit: int) -> list[dict[str, Any]]:
    """The newest ledger rows (watermark bookkeeping left out), newest first."""
    rows = [e for e in deps.ledger.recent(limit + 1) if e.kind != "watermark"]
    return [lineage_record(e) for e in rows[:limit]]


def lineage_record(entry: LedgerEntry) -> dict[str, Any]:
    """The ledger row as plain JSON-ready data: the notification payload and the API's answer."""
    return {"key": entry.key, "kind": entry.kind, "state": entry.state, "created": entry.created.isoformat(),
            "updated": entry.updated.isoformat(),
            **{name: value.isoformat() if isinstance(value, datetime) else value
               for name, value in sorted(entry.fields.items()) if value is not None}}


# ---------------------------------------------------------------- claims and transitions

def _with_claim(deps: Deps, key: str, kind: str, fields: Mapping[str, Any],
                work: Callable[[LedgerEntry], Outcome]) -> Outcome:
    """Claim `key` and do `work` on the claimed row. When the work fails, the claim is given back, so the
    host's retry of this invocation (a queue redelivery) does the work at once instead of meeting
    "already claimed" and waiting out the lease."""
    taken = _take(deps, key, kind, fields)
    if isinstance(taken, Outcome):
        return taken
    try:
        return work(taken)
    except BaseException:
        _release(deps, taken, {"released_at": deps.clock()})
        raise


def _take(deps: Deps, key: str, kind: str, fields: Mapping[str, Any]) -> LedgerEntry | Outcome:
    """Own `key` (a row in CLAIMED this caller may work on), or the Outcome that ends the call."""
    claim = deps.ledger.claim(key, kind, fields)
    if claim.won:
        return claim.entry
    entry = claim.entry
    if not policy.claim_is_stale(entry, deps.clock(), deps.settings.claim_lease_minutes):
        return _duplicate(deps, entry)
    # The holder died or gave the claim back. If it got as far as submitting, record its run; otherwise retake the key.
    run = deps.backend.find_run(policy.TAG_KEY_HASH, policy.key_digest(key))
    if run is not None:
        recorded = _transition(deps, entry, State.SUBMITTED, {
            "run_id": run.run_id, "experiment": run.experiment, "run_url": run.url, "recovered": True,
            "pipeline_version": run.tags.get(policy.TAG_PIPELINE_VERSION)})
        if recorded is None:
            return _settled_elsewhere(deps, key)
        return _done(Action.SUBMITTED, key, f"recovered run {run.run_id} of a claim whose holder died",
                     run_id=run.run_id, recovered=True)
    try:
        retaken = deps.ledger.update(entry, State.CLAIMED, {**fields, "retaken_at": deps.clock(),
                                                            "released_at": None})
    except ConcurrencyError:
        return _settled_elsewhere(deps, key)
    log.info("retook stale claim %s (no run carries it)", key)
    return retaken


def _transition(deps: Deps, entry: LedgerEntry, state: str, fields: Mapping[str, Any]) -> LedgerEntry | None:
    """Move the row to `state`; None when another worker moved it to another state first."""
    for _ in range(MAX_ATTEMPTS):
        try:
            return deps.ledger.update(entry, state, fields)
        except ConcurrencyError:
            current = _reread(deps, entry)
            if current.state != entry.state:
                return None
            entry = current     # only fields changed (e.g. a finishing lease): apply ours on top
    raise ConcurrencyError(f"ledger row {entry.key!r} kept changing; the event will be retried")


def _settle(deps: Deps, entry: LedgerEntry, state: str, fields: Mapping[str, Any]) -> LedgerEntry | None:
    """Like `_transition`, but a row moved from CLAIMED to SUBMITTED meanwhile (the submitter recording
    the run) is still ours to finish."""
    for _ in range(MAX_ATTEMPTS):
        final = _transition(deps, entry, state, fields)
        if final is not None:
            return final
        entry = _reread(deps, entry)
        if entry.state in State.FINAL:
            return None
    raise ConcurrencyError(f"ledger row {entry.key!r} kept changing; the event will be retried")


def _reread(deps: Deps, entry: LedgerEntry) -> LedgerEntry:
    current = deps.ledger.get(entry.key)
    if current is None:     # rows are never deleted
        raise LookupError(f"ledger row {entry.key!r} disappeared")
    return current


def _duplicate(deps: Deps, entry: LedgerEntry) -> Outcome:
    """The key was handled (or is being handled): no new effect, but finish a notification whose sender
    failed or died (never one another invocation is still sending)."""
    if entry.state in State.FINAL and entry.fields.get("notified") is False:
        _resend(deps, entry)
    return _done(Action.DUPLICATE, entry.key, f"already {entry.state}", state=entry.state,
                 run_id=entry.fields.get("run_id"))


def _settled_elsewhere(deps: Deps, key: str) -> Outcome:
    entry = deps.ledger.get(key)
    state = entry.state if entry else "unknown"
    return _done(Action.DUPLICATE, key, f"another worker moved the row to {state} first", state=state)


# ---------------------------------------------------------------- notifications and logging

def _pending_notification(deps: Deps, key: str, event_type: str) -> dict[str, Any]:
    """The fields of a final write: the notification to send and the send lease of the writer, so no
    duplicate sends it while the writer does."""
    return {"notification_type": event_type, "notification_id": policy.notification_id(key, event_type),
            "notified": False, "sending_since": deps.clock()}


def _resend(deps: Deps, entry: LedgerEntry) -> None:
    """Send a pending notification whose send lease is free (its sender failed, or died and the lease ended)."""
    held = _lease_held(deps, entry.fields.get("sending_since"))
    if held:
        log.info("notification for %s is being sent by another invocation since %s", entry.key, held.isoformat())
        return
    try:
        entry = deps.ledger.update(entry, entry.state, {"sending_since": deps.clock()})
    except ConcurrencyError:
        return      # another invocation took the send lease (or sent it) first
    _send_notification(deps, entry)


def _send_notification(deps: Deps, entry: LedgerEntry) -> None:
    """Publish the row's pending notification under the send lease `entry` holds, then mark it sent.
    A failed publish gives the lease back: its outcome is unknown, so the retry sends the same id again."""
    event_type, event_id = entry.fields["notification_type"], entry.fields["notification_id"]
    try:
        deps.notifier.publish(event_id, event_type, entry.key, lineage_record(entry))
    except BaseException:
        _release(deps, entry, {"sending_since": None})
        raise
    try:
        deps.ledger.update(entry, entry.state, {"notified": True, "notified_at": deps.clock(),
                                                "sending_since": None})
    except ConcurrencyError:
        log.info("notification %s for %s sent; its row changed meanwhile, left unmarked", event_type, entry.key)


def _alert_pipeline_unavailable(deps: Deps, error: PipelineNotPublished) -> None:
    """The deployed app and the pipeline endpoint disagree (or nothing was published): say so once per cause,
    not once per file (the id is the message's digest, so receivers drop repeats). The invocation still fails:
    the message is retried, then kept in the poison queue; no data is lost."""
    message = str(error)
    event_id = hashlib.sha256(message.encode("utf-8")).hexdigest()[:32]
    try:
        deps.notifier.publish(event_id, PIPELINE_UNAVAILABLE, deps.settings.pipeline_endpoint,
                              {"pipeline": deps.settings.pipeline, "endpoint": deps.settings.pipeline_endpoint,
                               "error": message})
    except Exception as failure:  # noqa: BLE001 - the pipeline error is the one to raise
        log.error("notification %s could not be sent: %s", PIPELINE_UNAVAILABLE, type(failure).__name__)


def _done(action: str, key: str | None, message: str, *, level: int = logging.INFO, **detail: Any) -> Outcome:
    log.log(level, "%s %s: %s", action, key or "-", message)
    return Outcome(action, key, {"message": message, **{k: v for k, v in detail.items() if v is not None}})
