"""What the Event Grid webhooks put on the work queues, and how the queue workers read it back. Pure.

Event Grid waits about 30 s for a webhook's answer, then redelivers
(https://learn.microsoft.com/azure/event-grid/delivery-and-retry), and the Functions host filters nothing
(the blobs extension queues every event of a batch). So the webhooks only parse, apply `retrainer.filters`
and put one small message on a Storage queue; the queue triggers do the work, with the host's retries and
its `<queue>-poison` queue. A message names the work, never carries the data: the worker reads the blob's
current properties itself.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from retrainer import policy
from retrainer.events import (BLOB_CREATED, RUN_STATUS_CHANGED, BadEvent, BlobCreated, DomainEvent, RunEvent,
                              parse_event)
from retrainer.settings import Settings

BLOB_QUEUE = "retrainer-blob-events"
RUN_QUEUE = "retrainer-run-events"
POISON_SUFFIX = "-poison"
WORK_QUEUES = (BLOB_QUEUE, RUN_QUEUE)


class BadMessage(ValueError):
    """A queue message that is not one the webhooks write; the message says what is wrong."""


@dataclass(frozen=True)
class Accepted:
    message: str                # the queue message's body
    summary: str                # one line for the log


@dataclass(frozen=True)
class Ignored:
    reason: str


@dataclass(frozen=True)
class BlobWork:
    event_id: str
    container: str
    name: str
    etag: str


def blob_work(event: DomainEvent, settings: Settings) -> Accepted | Ignored:
    """A BlobCreated that may start a training becomes a message; anything else is ignored, with the reason."""
    if not isinstance(event, BlobCreated):
        return Ignored(f"event {event.id} of type {getattr(event, 'type', 'RunEvent')} is not a BlobCreated")
    reason = policy.blob_filter(settings).ignore(BLOB_CREATED, event.subject, event.api, event.size)
    if reason:
        return Ignored(f"event {event.id}: {reason}")
    body = {"id": event.id, "container": event.container, "name": event.name, "etag": event.etag,
            "api": event.api, "size": event.size, "sequencer": event.sequencer}
    return Accepted(json.dumps(body), f"{event.container}/{event.name}@{event.etag} ({event.api}, {event.size} B)")


def read_blob_work(body: str) -> BlobWork:
    document = _object(body)
    try:
        return BlobWork(*(_text(document, name) for name in ("id", "container", "name", "etag")))
    except BadMessage as error:
        raise BadMessage(f"blob work message: {error}") from None


def run_work(event: DomainEvent, settings: Settings) -> Accepted | Ignored:
    """A final run event of a run this app submitted becomes a message: the event itself, without the run
    properties (the worker reads the run from the backend), so it stays far below a queue message's 64 KiB."""
    if not isinstance(event, RunEvent):
        return Ignored(f"event {event.id} of type {getattr(event, 'type', 'BlobCreated')} is not a run event")
    reason = policy.ignore_run_event(event, settings)
    if reason:
        return Ignored(f"event {event.id}: {reason}")
    data: dict[str, Any] = {"runId": event.run_id, "runType": event.run_type, "experimentName": event.experiment_name,
                            "experimentId": event.experiment_id, "runTags": dict(event.run_tags)}
    if event.type == RUN_STATUS_CHANGED:
        data["runStatus"] = event.run_status
    body = {"id": event.id, "eventType": event.type, "topic": event.topic, "subject": event.subject,
            "eventTime": event.time.isoformat() if event.time else None, "dataVersion": "2",
            "data": {k: v for k, v in data.items() if v is not None}}
    return Accepted(json.dumps(body), f"run {event.run_id} {event.run_status}")


def read_run_work(body: str) -> RunEvent:
    try:
        event = parse_event(_object(body))
    except BadEvent as error:
        raise BadMessage(f"run work message: {error}") from None
    if not isinstance(event, RunEvent):
        raise BadMessage(f"run work message holds a {type(event).__name__}, not a run event")
    return event


def _object(body: str) -> dict[str, Any]:
    try:
        document = json.loads(body)
    except ValueError:
        raise BadMessage(f"not JSON: {body[:80]!r}") from None
    if not isinstance(document, dict):
        raise BadMessage(f"not a JSON object: {body[:80]!r}")
    return document


def _text(document: dict[str, Any], name: str) -> str:
    value = document.get(name)
    if not isinstance(value, str) or not value:
        raise BadMessage(f"needs a non-empty string {name!r}, got {value!r}")
    return value
