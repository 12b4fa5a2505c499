"""Azure ML reports a run ended (RunCompleted / RunStatusChanged): gate, register, notify.

A malformed event is logged and dropped: retrying it could never succeed. Anything else that fails
raises, so the host answers 500 and Event Grid redelivers; the handler is idempotent.
"""
import logging

import azure.functions as func

from retrainer import bootstrap, events, handlers
from triggers._invoke import log_outcome

bp = func.Blueprint()
log = logging.getLogger("retrainer")


@bp.event_grid_trigger(arg_name="event")
def ml_events(event: func.EventGridEvent) -> None:
    try:
        parsed = events.parse_event({
            "id": event.id, "topic": event.topic, "subject": event.subject,
            "eventType": event.event_type, "dataVersion": event.data_version, "data": event.get_json(),
            "eventTime": event.event_time.isoformat() if event.event_time else None,
        })
    except events.BadEvent as error:
        log.error("ml_events: event %s dropped: %s", event.id, error)
        return
    log_outcome("ml_events", handlers.run_finished(bootstrap.deps(), parsed))
