"""A data file lands in the incoming container: the webhook queues it, the queue worker validates and submits.

`blob_events` answers Event Grid in milliseconds: it parses, applies the filters and writes one small message.
`blob_ingest` does the work with the host's retries and `retrainer-blob-events-poison`. No blob bytes pass
through the host: the handler reads the blob's properties and a bounded prefix with its own client.
"""
import logging

import azure.functions as func

from retrainer import bootstrap, events, handlers, intake
from triggers._invoke import event_payload, log_outcome

bp = func.Blueprint()
log = logging.getLogger("retrainer")


@bp.event_grid_trigger(arg_name="event")
@bp.queue_output(arg_name="work", queue_name=intake.BLOB_QUEUE, connection="AzureWebJobsStorage")
def blob_events(event: func.EventGridEvent, work: func.Out[str]) -> None:
    try:
        decided = intake.blob_work(events.parse_event(event_payload(event)), bootstrap.settings())
    except events.BadEvent as error:
        log.error("blob_events: event %s dropped: %s", event.id, error)
        return
    if isinstance(decided, intake.Ignored):
        log.info("blob_events: ignored %s", decided.reason)
        return
    work.set(decided.message)
    log.info("blob_events: queued %s", decided.summary)


@bp.queue_trigger(arg_name="msg", queue_name=intake.BLOB_QUEUE, connection="AzureWebJobsStorage")
def blob_ingest(msg: func.QueueMessage) -> None:
    work = intake.read_blob_work(msg.get_body().decode("utf-8"))
    log_outcome("blob_ingest", handlers.data_arrived(bootstrap.deps(), work.container, work.name, trigger="blob"))
