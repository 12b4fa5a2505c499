"""Sweep runs still marked submitted past their deadline: Azure ML sends no event for a cancelled
run, and Event Grid can give up."""
import azure.functions as func

from retrainer import bootstrap, handlers
from triggers._invoke import log_outcome

bp = func.Blueprint()


@bp.timer_trigger(arg_name="timer", schedule="%RETRAINER_RECONCILE_SCHEDULE%", use_monitor=True)
def reconcile(timer: func.TimerRequest) -> None:
    for outcome in handlers.reconcile(bootstrap.deps()):
        log_outcome("reconcile", outcome)
