"""A data file lands in the incoming container: the webhook queues it, the queue worker validates and submits.

`blob_events` answers Event Grid in milliseconds: it parses, applies the filters and writes one small message.
`blob_ingest` does the work with the host's retries and `retrainer-blob-events-poison`. No blob bytes pass
through the host: the handler reads the blob's properties and a bounded prefix with its own client.
"""
import azure.functions as func

from retrainer import bootstrap, handlers, intake
from triggers._invoke import log_outcome, queue_work

bp = func.Blueprint()


@bp.event_grid_trigger(arg_name="event")
@bp.queue_output(arg_name="work", queue_name=intake.BLOB_QUEUE, connection="AzureWebJobsStorage")
def blob_events(event: func.EventGridEvent, work: func.Out[str]) -> None:
    queue_work("blob_events", event, work, intake.blob_work)


@bp.queue_trigger(arg_name="msg", queue_name=intake.BLOB_QUEUE, connection="AzureWebJobsStorage")
def blob_ingest(msg: func.QueueMessage) -> None:
    work = intake.read_blob_work(msg.get_body().decode("utf-8"))
    log_outcome("blob_ingest", handlers.data_arrived(bootstrap.deps(), work.container, work.name, trigger="blob"))
