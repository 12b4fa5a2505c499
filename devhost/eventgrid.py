"""Event Grid webhook delivery as the Functions host's extension receives it: the `aeg-event-type`
header, the SubscriptionValidation handshake, and batches in Event Grid or CloudEvents 1.0 schema."""
from __future__ import annotations

import ipaddress
import json
from typing import Any
from urllib.parse import unquote, urlsplit

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


def blob_path(event: dict[str, Any]) -> tuple[str, str]:
    """(container, blob name) of a storage event, from `data.url` as the blobs extension reads it
    (GetBlobTriggerMessage: BlobUriBuilder, where an IP or localhost host means a path-style URL that starts
    with the account), whatever the event's type, api or size."""
    data = event.get("data") if isinstance(event.get("data"), dict) else {}
    url = data.get("url")
    split = urlsplit(url) if isinstance(url, str) else None
    path_style = split is not None and (split.hostname == "localhost" or _is_ip(split.hostname or ""))
    parts = split.path.lstrip("/").split("/", 2 if path_style else 1) if split else []
    parts = parts[1:] if path_style else parts
    if len(parts) != 2 or not all(parts):
        raise BadDelivery(f"event {event.get('id')!r}: data.url {url!r} does not name a blob "
                          "(https://<account>.blob.core.windows.net/<container>/<blob>)")
    return unquote(parts[0]), unquote(parts[1])


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False
