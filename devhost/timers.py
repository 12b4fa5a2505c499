"""Timer triggers: NCRONTAB schedules in UTC, status blobs, past-due detection, run_on_startup.

Like the Functions host, a monitored timer keeps `timers/<hostId>/<functionId>/status` in container
`azure-webjobs-hosts` with Last/Next/LastUpdated. A host that starts after the recorded Next
fires once with `past_due=True` (not once per missed occurrence).
"""
from __future__ import annotations

import json
import logging
import threading
from datetime import datetime, timezone
from typing import Callable, Iterable

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient

from devhost.app_loader import FunctionSpec
from devhost.bindings import Invoker, timer_argument
from devhost.blob_poller import HOSTS_CONTAINER
from devhost.ncrontab import next_occurrence, validate

log = logging.getLogger("devhost")


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class Timers:
    def __init__(self, specs: Iterable[FunctionSpec], blobs: BlobServiceClient, invoker: Invoker, *,
                 host_id: str, clock: Callable[[], datetime] = utc_now) -> None:
        self._specs = {s.name: s for s in specs if s.trigger_type == "timerTrigger"}
        for spec in self._specs.values():
            validate(spec.trigger["schedule"])
        self._blobs, self._invoker, self._host_id, self._clock = blobs, invoker, host_id, clock
        self._next: dict[str, datetime] = {}
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
        for name, spec in self._specs.items():
            status = self._read_status(spec) if self._monitored(spec) else None
            self._next[name] = next_occurrence(spec.trigger["schedule"], now)
            past_due = status is not None and _parse(status["Next"]) < now
            if past_due or spec.trigger.get("runOnStartup"):
                self._fire(spec, scheduled=now, past_due=past_due, status=status)
            elif self._monitored(spec):
                self._write_status(spec, last=status.get("Last") if status else None)
        self._thread.start()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join()

    def fire_now(self, function_name: str) -> None:
        """A manual run (admin endpoint): not past due, the schedule is unchanged."""
        spec = self._specs[function_name]
        self._fire(spec, scheduled=self._clock(), past_due=False,
                   status=self._read_status(spec) if self._monitored(spec) else None)

    def _run_forever(self) -> None:
        while not self._stopping:
            now = self._clock()
            for name, spec in self._specs.items():
                scheduled = self._next[name]
                if scheduled <= now:
                    self._next[name] = next_occurrence(spec.trigger["schedule"], max(now, scheduled))
                    self._fire(spec, scheduled=scheduled, past_due=False,
                               status=self._read_status(spec) if self._monitored(spec) else None)
            # Wake at the next occurrence; re-read the clock at least each minute (sleep, clock changes).
            wait = min(self._next.values()) - self._clock()
            self._wake.wait(min(max(wait.total_seconds(), 0.0), 60.0))

    def _fire(self, spec: FunctionSpec, *, scheduled: datetime, past_due: bool, status: dict | None) -> None:
        future = self._invoker.submit(spec, lambda: timer_argument(past_due, status),
                                      "past due" if past_due else "schedule")
        if self._monitored(spec):
            future.add_done_callback(lambda _: self._write_status(spec, last=scheduled.isoformat()))

    @staticmethod
    def _monitored(spec: FunctionSpec) -> bool:
        return spec.trigger.get("useMonitor", True) is not False

    def _status_blob(self, spec: FunctionSpec):
        return self._blobs.get_blob_client(HOSTS_CONTAINER, f"timers/{self._host_id}/{spec.function_id}/status")

    def _read_status(self, spec: FunctionSpec) -> dict | None:
        try:
            return json.loads(self._status_blob(spec).download_blob().readall())
        except ResourceNotFoundError:
            return None
        except ValueError:
            log.warning("timer status of %s is not JSON: treated as missing", spec.name)
            return None

    def _write_status(self, spec: FunctionSpec, last: str | None) -> None:
        status = {"Last": last or datetime.min.replace(tzinfo=timezone.utc).isoformat(),
                  "Next": self._next[spec.name].isoformat(), "LastUpdated": self._clock().isoformat()}
        try:
            self._status_blob(spec).upload_blob(json.dumps(status), overwrite=True)
        except Exception:
            log.exception("writing the timer status of %s failed", spec.name)


def _parse(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
