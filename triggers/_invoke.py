"""What the triggers share: one log line per outcome, and the occurrence a timer tick stands for."""
from __future__ import annotations

import logging
from datetime import datetime, timezone

import azure.functions as func

log = logging.getLogger("retrainer")


def log_outcome(function: str, outcome) -> None:
    log.info("%s: %s %s %s", function, outcome.action, outcome.key or "-", outcome.detail or "")


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
