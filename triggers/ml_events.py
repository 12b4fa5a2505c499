"""Azure ML reports a run ended (RunCompleted / RunStatusChanged): the webhook queues it, the worker gates,
registers and notifies.

`ml_events` answers Event Grid in milliseconds: only final events of runs this app submitted, from the
configured workspace, are queued. `run_finished` does the work with the host's retries and
`retrainer-run-events-poison`; the handler is idempotent, so a redelivery changes nothing.
"""
import logging

import azure.functions as func

from retrainer import bootstrap, events, handlers, intake
from triggers._invoke import event_payload, log_outcome

bp = func.Blueprint()
log = logging.getLogger("retrainer")


@bp.event_grid_trigger(arg_name="event")
@bp.queue_output(arg_name="work", queue_name=intake.RUN_QUEUE, connection="AzureWebJobsStorage")
def ml_events(event: func.EventGridEvent, work: func.Out[str]) -> None:
    try:
        decided = intake.run_work(events.parse_event(event_payload(event)), bootstrap.settings())
    except events.BadEvent as error:
        log.error("ml_events: event %s dropped: %s", event.id, error)
        return
    if isinstance(decided, intake.Ignored):
        log.info("ml_events: ignored %s", decided.reason)
        return
    work.set(decided.message)
    log.info("ml_events: queued %s", decided.summary)


@bp.queue_trigger(arg_name="msg", queue_name=intake.RUN_QUEUE, connection="AzureWebJobsStorage")
def run_finished(msg: func.QueueMessage) -> None:
    event = intake.read_run_work(msg.get_body().decode("utf-8"))
    log_outcome("run_finished", handlers.run_finished(bootstrap.deps(), event))
