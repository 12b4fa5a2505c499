"""Fault scenarios over the real stack (tests/support/local_stack.py), shared by tests/faults and
bench/faults.py: deliver events as a Functions host's queues do (at least once, any order, a failed
invocation redelivered up to five times), kill hosts and run workers, sweep as the reconcile timer does,
then audit what a user relies on."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

from devhost.polling import poll
from retrainer import handlers, policy
from retrainer.events import parse_event
from retrainer.handlers import Deps
from retrainer.localrun import store
from retrainer.ports import State
from tests.support import local_stack
from tests.support.recorder import Recorder

MAX_DEQUEUE = 5                     # host.json's queues.maxDequeueCount default: then <queue>-poison
REPO = Path(__file__).resolve().parents[2]
Delivery = dict                     # {"blob": name} or {"event": Event Grid event as posted}


@dataclass
class Audit:
    files: int
    final: int = 0
    unnotified: list[str] = field(default_factory=list)
    not_final: list[str] = field(default_factory=list)
    runs_doubled: list[str] = field(default_factory=list)       # keys with more than one run
    versions_doubled: list[str] = field(default_factory=list)   # runs with more than one model version
    sent_twice: list[str] = field(default_factory=list)         # notification ids received more than once
    states: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        return (f"final {self.final}/{self.files}, lost {len(self.not_final)}, runs doubled "
                f"{len(self.runs_doubled)}, versions doubled {len(self.versions_doubled)}, unnotified "
                f"{len(self.unnotified)}, notification ids sent twice {len(self.sent_twice)}")


def blob_deliveries(names: list[str], copies: tuple[int, int], rng: random.Random) -> list[Delivery]:
    """Each file's BlobCreated delivered copies[0]..copies[1] times, shuffled."""
    deliveries = [{"blob": name} for name in names for _ in range(rng.randint(*copies))]
    rng.shuffle(deliveries)
    return deliveries


def deliver_one(deps: Deps, delivery: Delivery):
    if "blob" in delivery:
        return handlers.data_arrived(deps, deps.settings.incoming_container, delivery["blob"])
    return handlers.run_finished(deps, parse_event(delivery["event"]))


def drive(hosts: list[Deps], deliveries: list[Delivery], threads: int, rng: random.Random) -> list[str]:
    """Deliver on `threads` concurrent invocations, each on a random host; a failed invocation is delivered
    again (later, as a queue's visibility timeout does) up to MAX_DEQUEUE times. Returns the poisoned ones."""
    lock = threading.Lock()
    poisoned: list[str] = []

    def invoke(delivery: Delivery, attempt: int = 1) -> None:
        with lock:
            deps = rng.choice(hosts)
        try:
            deliver_one(deps, delivery)
        except Exception as error:     # noqa: BLE001 - the host's retry, as the queue trigger does
            if attempt >= MAX_DEQUEUE:
                with lock:
                    poisoned.append(f"{delivery}: {type(error).__name__}: {error}")
                return
            invoke(delivery, attempt + 1)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(invoke, deliveries))
    return poisoned


def posted_run_events(recorder: Recorder) -> list[dict]:
    """The run events the workers posted, as Event Grid delivered them (one dict per event)."""
    found = []
    for received in list(recorder.received):
        found.extend(received.body if isinstance(received.body, list) else [received.body])
    return found


def wait_for_runs(deps: Deps, keys: list[str], run_events: Recorder, timeout: float) -> None:
    """Until every submitted key's run has posted its event or ended (a killed worker posts none)."""
    def ended() -> bool:
        posted = {e["data"]["runId"] for e in posted_run_events(run_events)}
        open_runs = [e.fields["run_id"] for e in map(deps.ledger.get, keys)
                     if e and e.state == State.SUBMITTED and e.fields.get("run_id") not in posted]
        return all(deps.backend.get_run(run_id).status in ("Completed", "Failed", "Canceled") for run_id in open_runs)

    poll(ended, timeout, interval=0.5)


def settle(deps: Deps, keys: list[str], run_events: Recorder, timeout: float, pause: float = 0.5) -> float:
    """What follows the faults, one step at a time: deliver the run events not delivered yet (a failed
    delivery comes again next round), and sweep as the reconcile timer does once the leases ended (its
    clock is set past them: no invocation that held one is still at work). Until every row is final and
    notified, or `timeout`; returns the seconds it took."""
    later = replace(deps, clock=lambda: datetime.now(timezone.utc) + timedelta(
        minutes=deps.settings.claim_lease_minutes + 1))
    started, delivered_ids = time.monotonic(), set()
    while time.monotonic() - started < timeout:
        for event in posted_run_events(run_events):
            if event["id"] not in delivered_ids:
                try:
                    deliver_one(deps, {"event": event})
                    delivered_ids.add(event["id"])
                except Exception:      # noqa: BLE001 - redelivered next round
                    pass
        list(handlers.reconcile(later))
        if all(_settled(deps.ledger.get(key)) for key in keys):
            break
        time.sleep(pause)
    return time.monotonic() - started


def _settled(entry) -> bool:
    return entry is not None and entry.state in State.FINAL and entry.fields.get("notified") is True


def audit(deps: Deps, keys: list[str], sink: Recorder) -> Audit:
    report = Audit(files=len(keys))
    for key in keys:
        entry = deps.ledger.get(key)
        state = entry.state if entry else "missing"
        report.states[state] = report.states.get(state, 0) + 1
        if entry is None or entry.state not in State.FINAL:
            report.not_final.append(key)
            continue
        report.final += 1
        if entry.fields.get("notified") is not True:
            report.unnotified.append(key)
    client = store.client(deps.settings.mlflow_tracking_uri)
    experiment = client.get_experiment_by_name(deps.settings.experiment)
    runs = client.search_runs([experiment.experiment_id], f"tags.`{policy.TAG_APP}` = '{policy.APP_NAME}'",
                              max_results=50000) if experiment else []
    per_key: dict[str, int] = {}
    for run in runs:
        key = run.data.tags.get(policy.TAG_KEY)
        per_key[key] = per_key.get(key, 0) + 1
    report.runs_doubled = sorted(k for k, n in per_key.items() if n > 1)
    per_run: dict[str, int] = {}
    for version in client.search_model_versions(f"name = '{deps.settings.model_name}'"):
        run_id = (version.tags or {}).get(policy.TAG_RUN_ID)
        per_run[run_id] = per_run.get(run_id, 0) + 1
    report.versions_doubled = sorted(r for r, n in per_run.items() if n > 1)
    report.sent_twice = local_stack.Sent.of(sink).twice()
    return report


# ---------------------------------------------------------------- a host as a process, to be killed

def start_host(env: dict[str, str], deliveries: list[Delivery], kill_at: str | None = None) -> subprocess.Popen:
    """A host process handling `deliveries` in order; it prints "ready", then "done N" after each. `kill_at`
    ("port.method:n:before|after", e.g. "notifier.publish:1:after") makes it SIGKILL itself there."""
    command = [sys.executable, "-m", "tests.support.scenarios", json.dumps(deliveries)]
    if kill_at:
        command.append(kill_at)
    return subprocess.Popen(command, cwd=REPO, env={**os.environ, **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)


def delivered(host: subprocess.Popen) -> int:
    """Wait for the host to end (finished, or killed); how many deliveries it completed."""
    done = sum(1 for line in host.stdout if line.startswith("done "))
    host.wait()
    return done


class _KillAt:
    """Wraps a port: SIGKILLs this process before or after the n-th call of one method."""

    def __init__(self, target, method: str, nth: int, when: str) -> None:
        self._target, self._method, self._left, self._when = target, method, nth, when

    def __getattr__(self, name: str):
        attribute = getattr(self._target, name)
        if name != self._method:
            return attribute

        def call(*args, **kwargs):
            self._left -= 1
            if self._left == 0 and self._when == "before":
                os.kill(os.getpid(), signal.SIGKILL)
            result = attribute(*args, **kwargs)
            if self._left == 0:
                os.kill(os.getpid(), signal.SIGKILL)
            return result

        return call


def _host_main(deliveries: list[Delivery], kill_at: str | None) -> None:
    from retrainer.settings import Settings

    settings = Settings.from_env()
    deps = local_stack.deps(settings, sink=os.environ["FAULTS_SINK_URL"])
    if kill_at:
        where, nth, when = kill_at.split(":")
        port, method = where.split(".")
        deps = replace(deps, **{port: _KillAt(getattr(deps, port), method, int(nth), when)})
    print("ready", flush=True)
    for index, delivery in enumerate(deliveries):
        deliver_one(deps, delivery)
        print(f"done {index}", flush=True)


def run_finished_deliveries(run_events: Recorder, copies: int, rng: random.Random) -> list[Delivery]:
    deliveries = [{"event": e} for e in posted_run_events(run_events) for _ in range(copies)]
    rng.shuffle(deliveries)
    return deliveries


if __name__ == "__main__":
    _host_main(json.loads(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else None)

