"""Build the azure.functions input objects the Python worker would pass, run invocations on a bounded thread
pool (writing their output bindings when they succeed), and log each one: function, trigger, duration, outcome."""
from __future__ import annotations

import asyncio
import inspect
import logging
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Mapping

import azure.functions as func
from azure.functions.timer import TimerRequest

from devhost.app_loader import FunctionSpec
from devhost.queues import QueueOutputs

log = logging.getLogger("devhost")


@dataclass(frozen=True)
class Outcome:
    succeeded: bool
    result: Any = None
    error: str | None = None


class Out(func.Out):
    """The worker's func.Out (azure_functions_worker/bindings/out.py): holds what the function set."""

    def __init__(self) -> None:
        self._value: Any = None

    def set(self, val: Any) -> None:
        self._value = val

    def get(self) -> Any:
        return self._value


class Invoker:
    def __init__(self, workers: int, outputs: QueueOutputs) -> None:
        """`outputs` writes the functions' queue output bindings."""
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="invocation")
        self._outputs = outputs

    def submit(self, spec: FunctionSpec, argument: Callable[[], Any], reason: str) -> "Future[Outcome]":
        """Run the function on the pool; `argument` builds its input there."""
        return self._pool.submit(self._invoke, spec, argument, reason)

    def shutdown(self) -> None:
        """Let in-flight invocations finish; drop queued ones (their queue messages and undelivered events come
        back at the next start)."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _invoke(self, spec: FunctionSpec, argument: Callable[[], Any], reason: str) -> Outcome:
        invocation = uuid.uuid4().hex[:8]
        started = time.perf_counter()
        try:
            outs = {binding.name: Out() for binding in spec.outputs}
            result = spec.user_function(**{spec.trigger["name"]: argument()}, **outs)
            if inspect.isawaitable(result):
                result = asyncio.run(result)
            # Outputs are bound only after the function returned (WorkerFunctionInvoker.BindOutputsAsync);
            # a failed write fails the invocation.
            for binding in spec.outputs:
                self._outputs.write(binding, outs[binding.name].get())
            outcome = Outcome(succeeded=True, result=result)
        except Exception as error:  # the host reports any failure of user code, then carries on
            log.exception("function=%s invocation=%s raised", spec.name, invocation)
            outcome = Outcome(succeeded=False, error=f"{type(error).__name__}: {error}")
        log.info("function=%s trigger=%s reason=%s invocation=%s duration=%.3fs outcome=%s", spec.name,
                 spec.trigger_type, reason, invocation, time.perf_counter() - started,
                 "succeeded" if outcome.succeeded else "failed")
        return outcome


def timer_argument(past_due: bool, status: Mapping[str, str] | None) -> TimerRequest:
    return TimerRequest(past_due=past_due, schedule_status=dict(status or {}), schedule={"AdjustForDST": True})


def event_argument(spec: FunctionSpec, event: Mapping[str, Any]) -> Any:
    """One event in Event Grid or CloudEvents 1.0 schema, as the parameter's annotation asks."""
    if "specversion" in event:
        if spec.parameter.annotation is func.CloudEvent:
            extra = {k: v for k, v in event.items() if k not in _CLOUD_EVENT_FIELDS}
            return func.CloudEvent(id=event["id"], source=event["source"], type=event["type"],
                                   specversion=event["specversion"], data=event.get("data"),
                                   time=_timestamp(event.get("time")), subject=event.get("subject"),
                                   datacontenttype=event.get("datacontenttype"),
                                   dataschema=event.get("dataschema"), **extra)
        return func.EventGridEvent(id=event["id"], data=event.get("data"), topic=event["source"],
                                   subject=event.get("subject", ""), event_type=event["type"],
                                   event_time=_timestamp(event.get("time")),
                                   data_version=event.get("dataversion", ""))
    return func.EventGridEvent(id=event["id"], data=event.get("data"), topic=event.get("topic", ""),
                               subject=event["subject"], event_type=event["eventType"],
                               event_time=_timestamp(event.get("eventTime")),
                               data_version=event.get("dataVersion", ""))


_CLOUD_EVENT_FIELDS = {"id", "source", "type", "specversion", "data", "time", "subject", "datacontenttype",
                       "dataschema"}


def _timestamp(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None
