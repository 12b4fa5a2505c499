"""Azure ML reports a run ended (RunCompleted / RunStatusChanged): the webhook queues it, the worker gates,
registers and notifies.

`ml_events` answers Event Grid in milliseconds: only final events of runs this app submitted, from the
configured workspace, are queued. `run_finished` does the work with the host's retries and
`retrainer-run-events-poison`; the handler is idempotent, so a redelivery changes nothing.
"""
import azure.functions as func

from retrainer import bootstrap, handlers, intake
from triggers._invoke import log_outcome, queue_work

bp = func.Blueprint()


@bp.event_grid_trigger(arg_name="event")
@bp.queue_output(arg_name="work", queue_name=intake.RUN_QUEUE, connection="AzureWebJobsStorage")
def ml_events(event: func.EventGridEvent, work: func.Out[str]) -> None:
    queue_work("ml_events", event, work, intake.run_work)


@bp.queue_trigger(arg_name="msg", queue_name=intake.RUN_QUEUE, connection="AzureWebJobsStorage")
def run_finished(msg: func.QueueMessage) -> None:
    event = intake.read_run_work(msg.get_body().decode("utf-8"))
    log_outcome("run_finished", handlers.run_finished(bootstrap.deps(), event))
