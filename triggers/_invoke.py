"""What the triggers share: one log line per outcome, the webhooks' parse-filter-queue, an event as the parser
reads it, and the occurrence a timer tick stands for."""
from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any, Callable

import azure.functions as func

from retrainer import bootstrap, events, intake
from retrainer.settings import Settings

log = logging.getLogger("retrainer")


def log_outcome(function: str, outcome) -> None:
    log.info("%s: %s %s %s", function, outcome.action, outcome.key or "-", outcome.detail or "")


def queue_work(function: str, event: func.EventGridEvent | func.CloudEvent, work: func.Out[str],
               decide: Callable[[events.DomainEvent, Settings], intake.Accepted | intake.Ignored]) -> None:
    """A webhook's whole job: parse the event, let `decide` filter it, and set the queue output when it is work.
    A malformed event is logged and dropped: no retry could make it well-formed."""
    try:
        decided = decide(events.parse_event(event_payload(event)), bootstrap.settings())
    except events.BadEvent as error:
        log.error("%s: event %s dropped: %s", function, event.id, error)
        return
    if isinstance(decided, intake.Ignored):
        log.info("%s: ignored %s", function, decided.reason)
        return
    work.set(decided.message)
    log.info("%s: queued %s", function, decided.summary)


def event_payload(event: func.EventGridEvent | func.CloudEvent) -> dict[str, Any]:
    """The event as `retrainer.events.parse_event` reads it. The Python worker decodes a delivery in the
    CloudEvents 1.0 schema to a `func.CloudEvent` whatever the annotation says (azure/functions/eventgrid.py,
    EventGridEventInConverter.decode), so both shapes arrive here."""
    if isinstance(event, func.CloudEvent):
        return {"specversion": event.specversion, "id": event.id, "source": event.source, "type": event.type,
                "subject": event.subject, "data": event.get_json(),
                "time": event.time.isoformat() if event.time else None}
    return {"id": event.id, "topic": event.topic, "subject": event.subject, "eventType": event.event_type,
            "dataVersion": event.data_version, "data": event.get_json(),
            "eventTime": event.event_time.isoformat() if event.event_time else None}


def scheduled_time(timer: func.TimerRequest) -> datetime:
    """The occurrence this tick stands for. While a tick runs, the host's schedule status holds it as
    `Next` (it becomes `Last` afterwards), so a past-due tick keeps its own time and counts once."""
    status = timer.schedule_status or {}
    if status.get("Next"):
        return _parse_time(status["Next"])
    return datetime.now(timezone.utc).replace(second=0, microsecond=0)


def _parse_time(text: str) -> datetime:
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
