"""The local backend's run queue: submitted runs wait as files; at most N workers drain them.

Azure ML queues runs on its compute; locally a burst of submissions (a thousand files dropped at
once) must not start a thousand processes. `submit` enqueues a job and starts a worker; a worker
that gets no slot (all N held) exits at once, and a worker holding a slot runs jobs until the queue
is empty. Every slot holder looks at the queue again after letting its slot go, so the last one out
sees a job enqueued while it was finishing.

A taken job is alive while its worker renews a lease on it: the taken file's modification time, touched
every quarter lease. A pid would not do: a dead child its parent has not reaped yet (a zombie) still
answers `kill(pid, 0)`, and a pid is reused.
"""
from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from retrainer.settings import Settings


class RunQueue:
    def __init__(self, state_dir: Path, slots: int, lease_seconds: float = Settings.local_worker_lease_seconds):
        self._waiting = state_dir / "queue" / "waiting"
        self._taken = state_dir / "queue" / "taken"
        self._slots = state_dir / "queue" / "slots"
        self._slot_count = max(1, slots)
        self.lease_seconds = lease_seconds
        for folder in (self._waiting, self._taken, self._slots):
            folder.mkdir(parents=True, exist_ok=True)

    @classmethod
    def of(cls, settings: Settings) -> "RunQueue":
        return cls(settings.state_dir, settings.local_max_runs, settings.local_worker_lease_seconds)

    def put(self, run_id: str, job: dict) -> None:
        # The name sorts by enqueue time, so `take` needs no stat of a file another worker may be moving.
        name = f"{time.time_ns():020d}-{run_id}.json"
        temporary = self._waiting / f".{name}.tmp"
        temporary.write_text(json.dumps(job))
        temporary.replace(self._waiting / name)

    def pending(self) -> bool:
        return any(self._waiting.glob("*.json"))

    def take(self) -> dict | None:
        """The oldest waiting job, moved to `taken` atomically so no two workers run it, its lease started."""
        for path in sorted(self._waiting.glob("*.json")):
            claimed = self._taken / path.name
            try:
                path.rename(claimed)
            except FileNotFoundError:
                continue        # another worker took it first
            os.utime(claimed)   # the rename kept the enqueue time
            return json.loads(claimed.read_text())
        return None

    @contextmanager
    def lease(self, run_id: str) -> Iterator[None]:
        """Renew the lease of a taken job while the body runs (in a thread: a step may run for hours)."""
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(self.lease_seconds / 4):
                for path in self._taken.glob(f"*-{run_id}.json"):
                    path.touch()

        renewer = threading.Thread(target=renew, name=f"lease-{run_id}", daemon=True)
        renewer.start()
        try:
            yield
        finally:
            stop.set()
            renewer.join()

    def done(self, run_id: str) -> None:
        for path in self._taken.glob(f"*-{run_id}.json"):
            path.unlink(missing_ok=True)

    def knows(self, run_id: str) -> bool:
        """Whether the run was ever queued and not yet done (waiting, or taken by a live or dead worker)."""
        return any(self._waiting.glob(f"*-{run_id}.json")) or any(self._taken.glob(f"*-{run_id}.json"))

    def has(self, run_id: str) -> bool:
        """Whether the run is waiting, or taken by a worker whose lease has not run out."""
        if any(self._waiting.glob(f"*-{run_id}.json")):
            return True
        for path in self._taken.glob(f"*-{run_id}.json"):
            try:
                if time.time() - path.stat().st_mtime < self.lease_seconds:
                    return True
            except FileNotFoundError:
                continue        # done meanwhile
        return False

    def stranded(self) -> bool:
        """Jobs wait while a worker slot is free: the worker that would have drained them died."""
        if not self.pending():
            return False
        with self.slot() as free:
            return free

    @contextmanager
    def slot(self) -> Iterator[bool]:
        """Hold one of the worker slots, if one is free: yields whether it got one. The lock is the
        operating system's, so a worker that dies frees its slot."""
        for index in range(self._slot_count):
            handle = os.open(self._slots / f"slot-{index}.lock", os.O_CREAT | os.O_RDWR, 0o600)
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(handle)
                continue
            try:
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
                os.close(handle)
            return
        yield False
