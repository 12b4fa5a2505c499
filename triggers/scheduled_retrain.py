"""The retraining schedule came due: retrain on the dataset folder if it holds newer data."""
import azure.functions as func

from retrainer import bootstrap, handlers
from triggers._invoke import log_outcome, scheduled_time

bp = func.Blueprint()


@bp.timer_trigger(arg_name="timer", schedule="%RETRAINER_SCHEDULE%", use_monitor=True)
def scheduled_retrain(timer: func.TimerRequest) -> None:
    outcome = handlers.retrain_due(bootstrap.deps(), "scheduled_retrain", scheduled_time(timer),
                                   past_due=timer.past_due)
    log_outcome("scheduled_retrain", outcome)
