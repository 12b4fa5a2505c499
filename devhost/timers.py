"""Timer triggers: NCRONTAB schedules in UTC, status blobs, past-due detection, run_on_startup.

Like the Functions host, a monitored timer keeps `timers/<hostId>/<functionId>/status` in container
`azure-webjobs-hosts` with Last/Next/LastUpdated. A host that starts after the recorded Next fires
once with `past_due=True` (not once per missed occurrence). A timer's runs never overlap: the next
occurrence is computed when a run ends. While a run goes, its schedule_status holds that run's
occurrence as `Next`.
"""
from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Iterable

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient

from devhost.app_loader import FunctionSpec
from devhost.bindings import Invoker, timer_argument
from devhost.ncrontab import next_occurrence, validate
from devhost.settings import HOSTS_CONTAINER

log = logging.getLogger("devhost")
NEVER = datetime.min.replace(tzinfo=timezone.utc).isoformat()


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class _Timer:
    spec: FunctionSpec
    next: datetime
    last: str = NEVER
    running: bool = False

    @property
    def monitored(self) -> bool:
        return self.spec.trigger.get("useMonitor", True) is not False


class Timers:
    def __init__(self, specs: Iterable[FunctionSpec], blobs: BlobServiceClient, invoker: Invoker, *,
                 host_id: str, clock: Callable[[], datetime] = utc_now) -> None:
        self._specs = [s for s in specs if s.trigger_type == "timerTrigger"]
        for spec in self._specs:
            validate(spec.trigger["schedule"])
        self._blobs, self._invoker, self._host_id, self._clock = blobs, invoker, host_id, clock
        self._timers: dict[str, _Timer] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run_forever, name="timers", daemon=True)

    def start(self) -> None:
        if not self._specs:
            return
        try:
            self._blobs.create_container(HOSTS_CONTAINER)
        except ResourceExistsError:
            pass
        now = self._clock()
        for spec in self._specs:
            timer = self._timers[spec.name] = _Timer(spec, next_occurrence(spec.trigger["schedule"], now))
            status = self._read_status(timer) if timer.monitored else None
            if status:
                timer.last = status.get("Last", NEVER)
            if status and _parse(status["Next"]) < now:
                self._fire(timer, occurrence=_parse(status["Next"]), past_due=True, status=status, reason="past due")
            elif spec.trigger.get("runOnStartup"):
                self._fire(timer, occurrence=timer.next, past_due=False, status=self._status(timer, timer.next),
                           reason="startup")
            elif timer.monitored:
                self._write_status(timer)
        self._thread.start()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join()

    def fire_now(self, function_name: str) -> None:
        """A manual run (admin endpoint): no occurrence of the schedule, so no schedule status."""
        timer = self._timers[function_name]
        self._invoker.submit(timer.spec, lambda: timer_argument(False, {}), "manual")

    def _run_forever(self) -> None:
        while not self._stopping:
            now = self._clock()
            with self._lock:
                due = [t for t in self._timers.values() if not t.running and t.next <= now]
            for timer in due:
                self._fire(timer, occurrence=timer.next, past_due=False, status=self._status(timer, timer.next),
                           reason="schedule")
            with self._lock:
                idle = [t.next for t in self._timers.values() if not t.running]
            # Sleep to the next occurrence (a finished run wakes us); re-read the clock at least each minute.
            wait = (min(idle) - self._clock()).total_seconds() if idle else 60.0
            self._wake.wait(min(max(wait, 0.0), 60.0))
            self._wake.clear()

    def _fire(self, timer: _Timer, *, occurrence: datetime, past_due: bool, status: dict | None,
              reason: str) -> None:
        with self._lock:
            timer.running = True
        future = self._invoker.submit(timer.spec, lambda: timer_argument(past_due, status), reason)
        future.add_done_callback(lambda _: self._finished(timer, occurrence))

    def _finished(self, timer: _Timer, occurrence: datetime) -> None:
        with self._lock:
            timer.last = occurrence.isoformat()
            timer.next = next_occurrence(timer.spec.trigger["schedule"], max(self._clock(), occurrence))
            timer.running = False
        if timer.monitored:
            self._write_status(timer)
        self._wake.set()

    def _status(self, timer: _Timer, upcoming: datetime) -> dict[str, str]:
        return {"Last": timer.last, "Next": upcoming.isoformat(), "LastUpdated": self._clock().isoformat()}

    def _status_blob(self, timer: _Timer):
        return self._blobs.get_blob_client(HOSTS_CONTAINER,
                                           f"timers/{self._host_id}/{timer.spec.function_id}/status")

    def _read_status(self, timer: _Timer) -> dict | None:
        try:
            status = json.loads(self._status_blob(timer).download_blob().readall())
            _parse(status["Next"])
            return status
        except ResourceNotFoundError:
            return None
        except (ValueError, KeyError, TypeError):
            log.warning("timer status of %s is not valid: treated as missing", timer.spec.name)
            return None

    def _write_status(self, timer: _Timer) -> None:
        try:
            self._status_blob(timer).upload_blob(json.dumps(self._status(timer, timer.next)), overwrite=True)
        except Exception:  # Storage hiccup: the next run writes it again
            log.exception("writing the timer status of %s failed", timer.spec.name)


def _parse(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
