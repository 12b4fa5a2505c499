"""Typed domain events, parsed from Event Grid deliveries in either schema.

Event Grid schema: id, topic, subject, eventType, eventTime, data, dataVersion.
CloudEvents 1.0:   id, source, subject, type, time, data, specversion (`source` plays `topic`).

A payload that claims a known type but is malformed raises `BadEvent` (one line, safe to return as a 400);
a well-formed event of a type this app does not handle parses to `UnknownEvent`, which callers ignore.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Mapping

from retrainer.ports import RunStatus

BLOB_CREATED = "Microsoft.Storage.BlobCreated"
RUN_COMPLETED = "Microsoft.MachineLearningServices.RunCompleted"
RUN_STATUS_CHANGED = "Microsoft.MachineLearningServices.RunStatusChanged"

_BLOB_SUBJECT = re.compile(r"^/blobServices/default/containers/(?P<container>[^/]+)/blobs/(?P<name>.+)$")
# Azure ML docs show lower-case ("failed") as well as the SDK's casing: map both to RunStatus values.
_RUN_STATUSES = {s.lower(): s for s in (RunStatus.NOT_STARTED, RunStatus.QUEUED, RunStatus.PREPARING,
                                         RunStatus.RUNNING, RunStatus.FINALIZING, RunStatus.COMPLETED,
                                         RunStatus.FAILED, RunStatus.CANCELED)}
_RUN_STATUSES["cancelled"] = RunStatus.CANCELED


class BadEvent(ValueError):
    """The payload is not a valid event of the type it claims; the message says what is wrong."""


@dataclass(frozen=True)
class BlobCreated:
    id: str
    topic: str                  # the storage account's resource id
    subject: str
    time: datetime | None
    container: str
    name: str                   # blob name relative to the container
    etag: str
    size: int                   # data.contentLength
    api: str
    sequencer: str
    url: str
    content_type: str | None = None


@dataclass(frozen=True)
class RunEvent:
    """A run of an Azure ML workspace changed: `RunCompleted` or `RunStatusChanged`."""

    id: str
    type: str
    topic: str                  # the workspace's resource id
    subject: str
    time: datetime | None
    run_id: str
    experiment_name: str | None
    experiment_id: str | None
    run_type: str | None
    run_status: str             # a RunStatus value (or the raw string for one this app does not know)
    run_tags: Mapping[str, str] = field(default_factory=dict)
    run_properties: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RunCompleted(RunEvent):
    pass


@dataclass(frozen=True)
class RunStatusChanged(RunEvent):
    pass


@dataclass(frozen=True)
class UnknownEvent:
    id: str
    type: str
    topic: str
    subject: str


DomainEvent = BlobCreated | RunCompleted | RunStatusChanged | UnknownEvent


def parse_event(payload: Mapping[str, Any] | str | bytes) -> DomainEvent:
    """One event in the Event Grid or the CloudEvents 1.0 schema (a mapping, or its JSON text)."""
    if isinstance(payload, (str, bytes, bytearray)):
        try:
            payload = json.loads(payload)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadEvent(f"event body is not JSON ({exc})") from None
    if not isinstance(payload, Mapping):
        raise BadEvent(f"an event must be a JSON object, got {type(payload).__name__}")
    if "specversion" in payload:
        if payload["specversion"] != "1.0":
            raise BadEvent(f"unsupported CloudEvents specversion {payload['specversion']!r} (expected '1.0')")
        type_key, topic_key, time_key = "type", "source", "time"
    elif "eventType" in payload:
        type_key, topic_key, time_key = "eventType", "topic", "eventTime"
    else:
        raise BadEvent("not an Event Grid event (no 'eventType') nor a CloudEvent (no 'specversion')")

    event_id = _text(payload, "id")
    event_type = _text(payload, type_key)
    topic = _optional_text(payload, topic_key) or ""
    subject = _optional_text(payload, "subject") or ""
    if event_type == BLOB_CREATED:
        return _blob_created(event_id, topic, subject, _time(payload, time_key), _data(payload, event_type))
    if event_type in (RUN_COMPLETED, RUN_STATUS_CHANGED):
        return _run_event(event_id, event_type, topic, subject, _time(payload, time_key),
                          _data(payload, event_type))
    return UnknownEvent(id=event_id, type=event_type, topic=topic, subject=subject)


def _blob_created(event_id: str, topic: str, subject: str, time: datetime | None,
                  data: Mapping[str, Any]) -> BlobCreated:
    match = _BLOB_SUBJECT.match(subject)
    if not match:
        raise BadEvent(f"BlobCreated subject {subject!r} is not "
                       "'/blobServices/default/containers/<container>/blobs/<name>'")
    size = data.get("contentLength")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise BadEvent(f"BlobCreated data.contentLength must be a non-negative integer, got {size!r}")
    return BlobCreated(
        id=event_id, topic=topic, subject=subject, time=time,
        container=match["container"],
        name=match["name"],     # the subject carries the name as stored (data.url is percent-encoded)
        etag=_text(data, "eTag", "BlobCreated data"),
        size=size,
        api=_text(data, "api", "BlobCreated data"),
        sequencer=_optional_text(data, "sequencer", "BlobCreated data") or "",
        url=_optional_text(data, "url", "BlobCreated data") or "",
        content_type=_optional_text(data, "contentType", "BlobCreated data"),
    )


def _run_event(event_id: str, event_type: str, topic: str, subject: str, time: datetime | None,
               data: Mapping[str, Any]) -> RunEvent:
    where = f"{event_type.rsplit('.', 1)[-1]} data"
    if event_type == RUN_COMPLETED:
        cls: type[RunEvent] = RunCompleted
        status = RunStatus.COMPLETED
    else:
        cls = RunStatusChanged
        raw = _text(data, "runStatus", where)
        status = _RUN_STATUSES.get(raw.lower(), raw)
    return cls(
        id=event_id, type=event_type, topic=topic, subject=subject, time=time,
        run_id=_text(data, "runId", where),
        experiment_name=_optional_text(data, "experimentName", where),
        experiment_id=_optional_text(data, "experimentId", where),
        run_type=_optional_text(data, "runType", where),
        run_status=status,
        run_tags=_string_map(data, "runTags", where),
        run_properties=_string_map(data, "runProperties", where),
    )


def _data(payload: Mapping[str, Any], event_type: str) -> Mapping[str, Any]:
    data = payload.get("data")
    if isinstance(data, (str, bytes)):      # some publishers send data as JSON text
        try:
            data = json.loads(data)
        except ValueError:
            raise BadEvent(f"{event_type} data is a string that is not JSON") from None
    if not isinstance(data, Mapping):
        raise BadEvent(f"{event_type} event has no 'data' object")
    return data


def _text(obj: Mapping[str, Any], key: str, where: str = "event") -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value.strip():
        raise BadEvent(f"{where} needs a non-empty string '{key}', got {value!r}")
    return value


def _optional_text(obj: Mapping[str, Any], key: str, where: str = "event") -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadEvent(f"{where} '{key}' must be a string, got {type(value).__name__}")
    return value


def _string_map(obj: Mapping[str, Any], key: str, where: str) -> dict[str, str]:
    value = obj.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise BadEvent(f"{where} '{key}' must be an object, got {type(value).__name__}")
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in value.items()}


def _time(payload: Mapping[str, Any], key: str) -> datetime | None:
    raw = payload.get(key)
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise BadEvent(f"event '{key}' must be an ISO 8601 string, got {type(raw).__name__}")
    try:
        return datetime.fromisoformat(raw)
    except ValueError:
        raise BadEvent(f"event '{key}' is not an ISO 8601 time: {raw!r}") from None
