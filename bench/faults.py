"""Fault benchmark: the issue's three scenarios at full size, on the real stack, with what a user relies on.

    .venv/bin/python bench/faults.py [--files 200] [--kill-files 100] [--fault-files 100] [--seed 8]

The app's handlers run with real adapters (tests/support/local_stack.py): the Table Storage ledger and the
blob store on an Azurite this script starts, the local backend (MLflow on SQLite, at most 2 run workers)
with the one-step pipeline pipeline_defs/bench_trivial.py, notifications posted to a loopback sink. The
run workers post their run events to a recorder, from which the scenario delivers them.

1. duplicates: every BlobCreated delivered 2-3 times, shuffled, on 2 hosts x 4 concurrent invocations;
   every run event twice, shuffled, concurrently.
2. kills: a host process handles the deliveries and is SIGKILLed at 20 random moments (each restart gets
   the undelivered rest, the one in flight included, as a queue redelivers it); run workers are SIGKILLed 5
   times (some while their host lives). Then the reconcile sweep, after the leases, settles what is left.
3. storage faults: a proxy before Azurite fails 30% of the ledger's and blob store's requests, half of
   those after Azurite did the work (the response lost).

Each prints: final, lost, runs doubled, model versions doubled, unnotified, notification ids sent twice.
Leases are waited out by sweeping with the clock set past them (nothing holding one is still at work), so
the "after the last kill" time is the recovery work itself; in production add the claim lease
(RETRAINER_CLAIM_LEASE_MINUTES) and one reconcile interval. Prints figures; never passes or fails on time.
"""
from __future__ import annotations

import argparse
import logging
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from devhost import azurite as azurite_launcher  # noqa: E402
from retrainer.retry import Retry  # noqa: E402
from tests.support import local_stack, scenarios  # noqa: E402
from tests.support.fault_proxy import FaultProxy, proxied_connection_string, random_faults  # noqa: E402
from tests.support.recorder import Recorder  # noqa: E402

RETRY = Retry(attempts=6, base=0.05, cap=1.0)     # the app's policy with shorter pauses, so the run fits
SETTLE = 900.0
THREADS = 4
HOST_ALIVE_WORKER_KILLS = 2


class Stack:
    def __init__(self, root: Path, connection_string: str, name: str) -> None:
        self.connection_string = connection_string
        self.run_events, self.sink = Recorder(), Recorder()
        self.env = {"FAULTS_SINK_URL": self.sink.url, "RETRAINER_RUN_DEADLINE_MINUTES": "0"}
        self.settings = local_stack.configure(self.env, root / name, connection_string, self.run_events.url,
                                              worker_lease_seconds=5)
        os.environ.update(self.env)     # the run workers (and host processes) read their settings from it
        self.prefix = name

    def host(self, connection: str | None = None):
        return local_stack.deps(self.settings, sink=self.sink.url, retry=RETRY, ledger_connection=connection,
                                blob_connection=connection)

    def files(self, count: int) -> tuple[list[str], list[str]]:
        names = [f"{self.prefix}-{i:04d}.csv" for i in range(count)]
        return names, local_stack.upload(self.connection_string, names)

    def report(self, title: str, keys: list[str], extra: str = "") -> scenarios.Audit:
        audit = scenarios.audit(self.host(), keys, self.sink)
        print(f"{title}: {audit.line()}{extra}", flush=True)
        print(f"    states: {', '.join(f'{k} {v}' for k, v in sorted(audit.states.items()))}; runs "
              f"{len({e['data']['runId'] for e in scenarios.posted_run_events(self.run_events)})} reported "
              f"by their workers; notifications received {len(local_stack.Sent.of(self.sink).ids)}", flush=True)
        return audit


def duplicates(stack: Stack, count: int, rng: random.Random, settle: float) -> None:
    names, keys = stack.files(count)
    hosts = [stack.host(), stack.host()]
    started = time.monotonic()
    poisoned = scenarios.drive(hosts, scenarios.blob_deliveries(names, (2, 3), rng), THREADS, rng)
    scenarios.wait_for_runs(hosts[0], keys, stack.run_events, settle)
    poisoned += scenarios.drive(hosts, scenarios.run_finished_deliveries(stack.run_events, 2, rng), THREADS, rng)
    scenarios.settle(hosts[0], keys, stack.run_events, settle)
    stack.report(f"1. {count} files, events 2-3x shuffled, run events 2x", keys,
                 f" ({time.monotonic() - started:.0f}s, {len(poisoned)} poisoned)")


def kills(stack: Stack, count: int, rng: random.Random, settle: float, host_kills: int = 20,
          worker_kills: int = 5) -> None:
    names, keys = stack.files(count)
    pending = [{"blob": name} for name in names]
    rng.shuffle(pending)
    delivered_events: set[str] = set()
    # Workers alive during the rounds were mostly started by hosts killed before (their slots are held, so a
    # new host starts none): those kills are "host dead". The last ones are made while this process, which
    # runs the sweep and starts the workers the sweep needs, lives: "host alive".
    worker_kill_rounds = sorted(rng.sample(range(host_kills + 1), worker_kills - HOST_ALIVE_WORKER_KILLS))
    killed_hosts, worker_kills_by_parent = 0, {"alive": 0, "dead": 0}    # and "last": when the last was
    last_kill = started = time.monotonic()
    for round_ in range(host_kills + 1):
        for event in scenarios.posted_run_events(stack.run_events):   # events posted meanwhile join the queue
            if event["id"] not in delivered_events:
                delivered_events.add(event["id"])
                pending.append({"event": event})
        host = scenarios.start_host(stack.env, pending)
        assert host.stdout.readline().strip() == "ready"
        if worker_kill_rounds and worker_kill_rounds[0] <= round_:
            time.sleep(rng.uniform(0.0, 1.5))
            killed = _kill_a_worker(stack, rng, host.pid)
            if killed:
                worker_kill_rounds.pop(0)
                worker_kills_by_parent[killed] += 1
                last_kill = time.monotonic()
        if round_ == host_kills:
            done = scenarios.delivered(host)
        else:
            time.sleep(rng.uniform(0.2, 3.0))
            host.send_signal(signal.SIGKILL)
            last_kill = time.monotonic()
            killed_hosts += 1
            done = scenarios.delivered(host)
        pending = pending[done:]
    for pid in _workers_of(stack.settings.state_dir):   # strand the queue: the sweep must start new workers
        os.kill(pid, signal.SIGKILL)
        worker_kills_by_parent["dead"] += 1
    last_kill = time.monotonic()
    stop = threading.Event()
    killer = threading.Thread(target=_kill_own_workers, args=(rng, HOST_ALIVE_WORKER_KILLS, stop,
                                                              worker_kills_by_parent), daemon=True)
    killer.start()
    scenarios.settle(stack.host(), keys, stack.run_events, settle)
    stop.set()
    killer.join()
    recovery = time.monotonic() - max(last_kill, worker_kills_by_parent.pop("last", 0.0))
    workers = sum(worker_kills_by_parent.values())
    stack.report(f"2. {count} files, host SIGKILLed {killed_hosts}x, run workers SIGKILLed {workers}x "
                 f"({worker_kills_by_parent['alive']} with their host alive)", keys,
                 f"; every row final and notified {recovery:.1f}s after the last kill (sweeping every 0.5s) "
                 f"({time.monotonic() - started:.0f}s in all)")


def _kill_own_workers(rng: random.Random, count: int, stop: threading.Event, tally: dict[str, float]) -> None:
    """SIGKILL `count` run workers this process (a host that lives on) started, a moment after each starts."""
    while count and not stop.is_set():
        workers = local_stack.run_workers()
        if workers and not stop.wait(rng.uniform(0.5, 2.0)):
            try:
                os.kill(rng.choice(workers), signal.SIGKILL)
            except ProcessLookupError:
                continue
            tally["alive"] += 1
            tally["last"] = time.monotonic()
            count -= 1
        stop.wait(0.1)


def _kill_a_worker(stack: Stack, rng: random.Random, host_pid: int) -> str | None:
    """SIGKILL one run worker of the stack (waiting up to 3 s for one); whether its host (the process that
    started it) was alive."""
    deadline = time.monotonic() + 3.0
    while not (workers := _workers_of(stack.settings.state_dir)) and time.monotonic() < deadline:
        time.sleep(0.1)
    if not workers:
        return None
    victim = rng.choice(workers)
    try:
        parent = int(Path(f"/proc/{victim}/stat").read_text().rsplit(")", 1)[1].split()[1])
        os.kill(victim, signal.SIGKILL)
    except (OSError, IndexError):
        return None     # it ended meanwhile
    return "alive" if parent == host_pid else "dead"


def _workers_of(state_dir: Path) -> list[int]:
    """Run workers of this state folder, whoever started them (a killed host's are init's now)."""
    marker = f"RETRAINER_STATE_DIR={state_dir}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if b"local_worker" in (entry / "cmdline").read_bytes() and marker in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def storage_faults(stack: Stack, count: int, rng: random.Random, upstream: str, table_upstream: str,
                   settle: float) -> None:
    names, keys = stack.files(count)
    blob_proxy = FaultProxy(upstream, random_faults(0.3, seed=rng.randrange(1 << 30), lose_share=0.5))
    table_proxy = FaultProxy(table_upstream, random_faults(0.3, seed=rng.randrange(1 << 30), lose_share=0.5))
    proxied = proxied_connection_string(stack.connection_string, blob=blob_proxy, table=table_proxy)
    hosts = [stack.host(proxied), stack.host(proxied)]
    started = time.monotonic()
    poisoned = scenarios.drive(hosts, [{"blob": name} for name in names], THREADS, rng)
    scenarios.wait_for_runs(stack.host(), keys, stack.run_events, settle)
    poisoned += scenarios.drive(hosts, scenarios.run_finished_deliveries(stack.run_events, 1, rng), THREADS, rng)
    scenarios.settle(hosts[0], keys, stack.run_events, settle)
    faults = blob_proxy.faults + table_proxy.faults
    forwarded = blob_proxy.forwarded + table_proxy.forwarded
    stack.report(f"3. {count} files, 30% of storage requests failed", keys,
                 f" ({time.monotonic() - started:.0f}s; {forwarded} requests reached Azurite; injected "
                 f"{faults['refused']} refused, {faults['lost_response']} lost responses; "
                 f"{len(poisoned)} invocations poisoned after 5 tries)")
    blob_proxy.close()
    table_proxy.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/faults.py", description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200, help="files of the duplicates scenario (default 200)")
    parser.add_argument("--kill-files", type=int, default=100, help="files of the kills scenario (default 100)")
    parser.add_argument("--fault-files", type=int, default=100,
                        help="files of the storage faults scenario (default 100)")
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--only", choices=("duplicates", "kills", "storage"), help="run one scenario")
    parser.add_argument("--settle-timeout", type=float, default=SETTLE,
                        help=f"seconds to wait for every row to settle before reporting (default {SETTLE:g})")
    args = parser.parse_args(argv)
    if min(args.files, args.kill_files, args.fault_files) < 1:
        parser.error("every scenario needs at least 1 file")
    logging.basicConfig(level=logging.CRITICAL)    # retries and gate rejections are expected here, by the thousand
    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="bench-faults-"))
    server = azurite_launcher.start(root / "azurite")
    print(f"fault benchmark: {os.cpu_count()} CPUs, seed {args.seed}, state under {root}", flush=True)
    try:
        parts = dict(p.split("=", 1) for p in server.connection_string.split(";") if p)
        if args.only in (None, "duplicates"):
            duplicates(Stack(root, server.connection_string, "dup"), args.files, rng, args.settle_timeout)
        if args.only in (None, "kills"):
            kills(Stack(root, server.connection_string, "kill"), args.kill_files, rng, args.settle_timeout)
        if args.only in (None, "storage"):
            storage_faults(Stack(root, server.connection_string, "faults"), args.fault_files, rng,
                           parts["BlobEndpoint"], parts["TableEndpoint"], args.settle_timeout)
    finally:
        for pid in _workers_of(root):
            os.kill(pid, signal.SIGKILL)
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
