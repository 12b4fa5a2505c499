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
