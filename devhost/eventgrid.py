"""Event Grid webhook delivery as the Functions host's extension receives it: the `aeg-event-type`
header, the SubscriptionValidation handshake, and batches in Event Grid or CloudEvents 1.0 schema."""
from __future__ import annotations

import json
from typing import Any

VALIDATION, NOTIFICATION, DELETION = "SubscriptionValidation", "Notification", "SubscriptionDeletion"


class BadDelivery(ValueError):
    """The request is not a valid Event Grid delivery (answered with 400)."""


def delivery_kind(headers: Any) -> str:
    kind = headers.get("aeg-event-type")
    if kind not in (VALIDATION, NOTIFICATION, DELETION):
        raise BadDelivery(f"header aeg-event-type must be one of {VALIDATION}, {NOTIFICATION}, {DELETION} "
                          f"(got {kind!r})")
    return kind


def parse_batch(body: bytes) -> list[dict[str, Any]]:
    """A JSON array of events (a single event object is accepted too)."""
    try:
        payload = json.loads(body)
    except ValueError:
        raise BadDelivery("the request body is not JSON") from None
    events = payload if isinstance(payload, list) else [payload]
    if not events or not all(isinstance(e, dict) for e in events):
        raise BadDelivery("the request body must be a non-empty JSON array of event objects")
    return events


def validation_response(events: list[dict[str, Any]]) -> dict[str, str]:
    code = (events[0].get("data") or {}).get("validationCode")
    if not isinstance(code, str):
        raise BadDelivery("a SubscriptionValidation event must carry data.validationCode")
    return {"validationResponse": code}


# Storage APIs whose BlobCreated means "a complete file is there" (not a staged block, not a directory).
FILE_COMPLETE_APIS = frozenset({"PutBlob", "PutBlockList", "CopyBlob", "FlushWithClose"})


def blob_created(event: dict[str, Any]) -> tuple[str, str] | None:
    """(container, blob name) of a BlobCreated event that completes a non-empty file; None for any other
    event (another type, a partial write, a zero-byte blob)."""
    kind = event.get("eventType") or event.get("type")
    if kind != "Microsoft.Storage.BlobCreated":
        return None
    data = event.get("data") if isinstance(event.get("data"), dict) else {}
    if data.get("api") not in FILE_COMPLETE_APIS or not data.get("contentLength"):
        return None
    subject = event.get("subject") or ""
    marker = "/containers/"
    container, separator, name = subject.partition(marker)[2].partition("/blobs/")
    if not separator or not container or not name:
        raise BadDelivery(f"BlobCreated subject {subject!r} is not '/blobServices/default/containers/<c>/blobs/<name>'")
    return container, name
