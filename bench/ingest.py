"""Ingest benchmark: drop many small files at once into the incoming container of a running dev host.

    .venv/bin/python bench/ingest.py [--files 1000] [--rows 20] [--timeout 3600] [--workers N] [--until submitted]
                                     [--json PATH]

The real function_app runs on an in-process DevHost (its own Azurite, auth on, the local backend), routed to the
one-step pipeline pipeline_defs/bench_trivial.py. A file takes Azure's path: its upload -> the host's storage scan
(the stand-in for the Event Grid subscription, every DEVHOST_POLL_INTERVAL) -> the `blob_events` webhook, which
filters and queues one message -> the queue trigger `blob_ingest` (host.json's batch size), which claims, reads a
prefix, validates and submits. The files are uploaded with azure-storage-blob from a thread pool, all at once; the
ledger table is then read until every file's row is final. Prints files per second to submission (ledger state
`submitted`) and to completion (a final state), and the drop-to-claim and drop-to-submission latencies p50/p95: the
row's creation and its update to `submitted` against the end of the file's upload (both clocks are this process's).

Local runs wait in the local backend's queue and at most RETRAINER_LOCAL_MAX_RUNS worker processes drain it. The
benchmark stops by itself, ending the run workers its host started (by pid, its own children only), at --timeout or
when the machine's available memory falls below --min-free-mb, and prints the figures measured up to then.
Everything is on loopback. It prints figures; it never passes or fails on time.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import signal
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from azure.core.exceptions import ResourceNotFoundError  # noqa: E402
from azure.data.tables import TableClient  # noqa: E402
from azure.storage.blob import BlobServiceClient  # noqa: E402

from devhost import azurite, local_loop  # noqa: E402
from devhost.host import DevHost  # noqa: E402
from devhost.settings import HostSettings  # noqa: E402

STATE = REPO / ".state" / "bench-ingest"
LEDGER_TABLE = "retrainerledger"
FINAL = {"registered", "model_rejected", "failed", "rejected"}
# Seconds between reads of the ledger table. The read shares this process (and its GIL) with the host, so it is
# kept rare; submission times come from the rows themselves, not from when they were read.
SCAN_PAUSE = 2.0
COMPLETE = "every file reached a final state"
SUBMITTED = "every file was submitted (--until submitted)"
EXIT_GRACE = 30.0      # seconds the run workers get to exit by themselves once every file is final


@dataclass
class FileTimes:
    name: str
    uploaded: float                    # epoch seconds when its upload returned
    claimed: float | None = None       # the ledger row's creation
    submitted: float | None = None     # the ledger row's update to `submitted`
    completed: float | None = None     # when a final state was first seen
    state: str = ""


class MemoryGuard(threading.Thread):
    """Sets `tripped` (with the reason) when the machine's available memory falls below the floor."""

    def __init__(self, floor_mb: int) -> None:
        super().__init__(name="memory-guard", daemon=True)
        self.floor_mb = floor_mb
        self.tripped = threading.Event()
        self.reason = ""
        self.lowest_mb = available_mb()
        self._stop = threading.Event()

    def run(self) -> None:
        while not self._stop.wait(0.25):
            free = available_mb()
            self.lowest_mb = min(self.lowest_mb, free)
            if free < self.floor_mb:
                self.reason = (f"available memory fell to {free} MB (< --min-free-mb {self.floor_mb}) with "
                               f"{len(run_workers())} run workers alive")
                self.tripped.set()
                return

    def stop(self) -> None:
        self._stop.set()


def available_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) // 1024
    raise RuntimeError("/proc/meminfo has no MemAvailable line: this benchmark needs Linux")


def csv_file(index: int, rows: int) -> bytes:
    lines = ["file,row,value"] + [f"{index},{row},{(index * 31 + row * 17) % 1000 / 10}" for row in range(rows)]
    return ("\n".join(lines) + "\n").encode()


def configure(poll_interval: str | None, workers: int | None) -> HostSettings:
    shutil.rmtree(STATE, ignore_errors=True)
    STATE.mkdir(parents=True)
    os.environ.update({
        "RETRAINER_PIPELINE": "bench_trivial",
        "RETRAINER_PIPELINE_ENDPOINT": "bench-trivial",
        "RETRAINER_EXPERIMENT": "bench-ingest",
        "RETRAINER_MODEL_NAME": "bench_model",
        "RETRAINER_SCHEDULE": "0 0 0 1 1 *",          # the timers stay out of the way
        "RETRAINER_RECONCILE_SCHEDULE": "0 0 0 1 1 *",
        "RETRAINER_STATE_DIR": str(STATE),
        "DEVHOST_PORT": str(azurite.free_port()),
    })
    if poll_interval:
        os.environ["DEVHOST_POLL_INTERVAL"] = poll_interval
    if workers:
        os.environ["DEVHOST_WORKERS"] = str(workers)
    return local_loop.prepare(REPO)     # the host starts its own Azurite


def upload_all(host: DevHost, count: int, rows: int, threads: int) -> dict[str, FileTimes]:
    incoming = BlobServiceClient.from_connection_string(host.connection_string).get_container_client("incoming")
    payloads = {f"bench-{i:05d}.csv": csv_file(i, rows) for i in range(count)}

    def upload(name: str) -> tuple[str, str, float]:
        etag = incoming.get_blob_client(name).upload_blob(payloads[name], overwrite=True)["etag"]
        return name, etag, time.time()

    with ThreadPoolExecutor(threads) as pool:
        done = list(pool.map(upload, payloads))
    return {f"blob:incoming/{name}@{etag.strip(chr(34))}": FileTimes(name, uploaded) for name, etag, uploaded in done}


def withdraw(host: DevHost, keep: set[str]) -> int:
    """Delete the dropped files no invocation has taken yet. On stop the host runs every queued invocation;
    for a deleted blob each one fails at once instead of submitting a run."""
    incoming = BlobServiceClient.from_connection_string(host.connection_string).get_container_client("incoming")
    names = [b.name for b in incoming.list_blobs() if b.name not in keep]
    logging.getLogger("devhost").setLevel(logging.CRITICAL)   # one "blob not found" traceback per withdrawn file
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(incoming.delete_blob, names))
    return len(names)


def watch(host: DevHost, files: dict[str, FileTimes], deadline: float, guard: MemoryGuard, until: str) -> str:
    """Read the ledger until every file is final (or submitted, `until`); returns why it stopped."""
    table = TableClient.from_connection_string(host.connection_string, LEDGER_TABLE)
    shown = 0.0
    while True:
        for row in ledger_rows(table):
            times = files.get(row["key"])
            if times is None or times.completed is not None:
                continue
            times.state = row["state"]
            times.claimed = times.claimed or epoch(row["created"])
            if times.submitted is None and row["state"] == "submitted":
                times.submitted = epoch(row["updated"])
            if row["state"] in FINAL:
                times.completed = time.time()
        submitted = sum(1 for t in files.values() if t.submitted is not None)
        completed = sum(1 for t in files.values() if t.completed is not None)
        if time.monotonic() - shown >= 10:
            shown = time.monotonic()
            print(f"  {submitted:5d} submitted, {completed:5d} final, {len(run_workers()):4d} run workers alive, "
                  f"{available_mb():6d} MB available", flush=True)
        if completed == len(files):
            return COMPLETE
        if until == "submitted" and submitted == len(files):
            return SUBMITTED
        if guard.tripped.is_set():
            return guard.reason
        if time.monotonic() >= deadline:
            return "the --timeout passed"
        time.sleep(SCAN_PAUSE)


def ledger_rows(table: TableClient) -> list:
    try:
        return list(table.query_entities("PartitionKey eq 'ledger' and RowKey ge 'key-' and RowKey lt 'key.'",
                                         select=["key", "state", "created", "updated"]))
    except ResourceNotFoundError:     # the app creates the table on its first claim
        return []


def epoch(value: datetime) -> float:
    return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).timestamp()


def run_workers() -> list[int]:
    """The host's detached run workers still running: our direct children running local_worker."""
    return children(b"local_worker")


def children(command: bytes) -> list[int]:
    """Our direct children whose command line holds `command`."""
    mine = str(os.getpid())
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
            if parent == mine and command in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except (OSError, IndexError):
            continue    # it ended meanwhile
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used (its /proc stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def end_workers(grace: float) -> int:
    """Give the run workers `grace` seconds to exit, then terminate the rest by pid. Returns how many."""
    deadline = time.monotonic() + grace
    while run_workers() and time.monotonic() < deadline:
        time.sleep(0.5)
    ended = 0
    for pid in run_workers():
        try:
            os.kill(pid, signal.SIGTERM)
            ended += 1
        except ProcessLookupError:
            pass
    return ended


def percentiles(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"p50 {statistics.median(ordered):.2f}s  p95 {p95:.2f}s  (max {ordered[-1]:.2f}s, n={len(ordered)})"


def report(files: dict[str, FileTimes], started: float, uploaded: float) -> dict:
    """Print the figures; returns them (rates in files/s, latencies in seconds)."""
    times = list(files.values())
    figures: dict = {"files": len(times), "upload_s": uploaded - started}
    submitted = sorted(t.submitted for t in times if t.submitted is not None)
    completed = sorted(t.completed for t in times if t.completed is not None)
    states: dict[str, int] = {}
    for t in times:
        states[t.state or "not seen"] = states.get(t.state or "not seen", 0) + 1
    print(f"\nfiles dropped:       {len(times)} in {uploaded - started:.1f}s ({len(times) / (uploaded - started):.0f} "
          "uploads/s)")
    if submitted:
        span = submitted[-1] - started
        print(f"to submission:       {len(submitted)} files in {span:.1f}s = {len(submitted) / span:.2f} files/s")
        figures.update(submitted=len(submitted), submission_s=span, submission_rate=len(submitted) / span)
    if completed:
        span = completed[-1] - started
        print(f"to completion:       {len(completed)} files in {span:.1f}s = {len(completed) / span:.2f} files/s")
        figures.update(completed=len(completed), completion_rate=len(completed) / span)
    claims = [t.claimed - t.uploaded for t in times if t.claimed is not None]
    if claims:
        print(f"drop-to-claim:       {percentiles(claims)}")
    if submitted:
        latencies = [t.submitted - t.uploaded for t in times if t.submitted]
        print(f"drop-to-submission:  {percentiles(latencies)}")
        figures.update(submission_p50=statistics.median(latencies),
                       submission_p95=sorted(latencies)[min(len(latencies) - 1, round(0.95 * (len(latencies) - 1)))])
    missed = sum(1 for t in times if t.completed is not None and t.submitted is None)
    if missed:
        print(f"  ({missed} rows went final between two ledger reads: no submission time for them)")
    print(f"ledger states:       {', '.join(f'{k} {v}' for k, v in sorted(states.items()))}")
    return {**figures, "states": states}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/ingest.py", description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000, help="files dropped at once (default 1000)")
    parser.add_argument("--rows", type=int, default=20, help="data rows per file (default 20)")
    parser.add_argument("--upload-threads", type=int, default=8, help="concurrent uploads (default 8)")
    parser.add_argument("--timeout", type=float, default=3600, help="stop after this many seconds (default 3600)")
    parser.add_argument("--min-free-mb", type=int, default=4096,
                        help="stop when available memory falls below this (default 4096)")
    parser.add_argument("--poll-interval", help="DEVHOST_POLL_INTERVAL in seconds (default: the host's, 1)")
    parser.add_argument("--workers", type=int, help="DEVHOST_WORKERS, invocations at once (default: the host's, 4)")
    parser.add_argument("--until", choices=("final", "submitted"), default="final",
                        help="stop when every file is final (default) or as soon as every file is submitted")
    parser.add_argument("--json", type=Path, help="also write the figures to this file as JSON")
    args = parser.parse_args(argv)
    if args.files < 1 or args.rows < 1 or args.upload_threads < 1:
        parser.error("--files, --rows and --upload-threads must be at least 1")
    if available_mb() < args.min_free_mb:
        parser.error(f"only {available_mb()} MB of memory available, below --min-free-mb {args.min_free_mb}")

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("retrainer").setLevel(logging.ERROR)   # every file's gate rejection is expected
    settings = configure(args.poll_interval, args.workers)
    print(f"ingest benchmark: {args.files} files of {args.rows} rows, pipeline bench_trivial, poll interval "
          f"{settings.poll_interval:g}s, {settings.workers} invocation workers; {os.cpu_count()} CPUs, "
          f"{available_mb()} MB available, Python {platform.python_version()}", flush=True)
    guard = MemoryGuard(args.min_free_mb)
    deadline = time.monotonic() + args.timeout
    files: dict[str, FileTimes] = {}
    started = uploaded = time.time()
    stopped = "interrupted"
    cpu = (0.0, 0.0)
    with DevHost("function_app:app", settings, app_dir=REPO) as host:
        guard.start()
        try:
            files = upload_all(host, args.files, args.rows, args.upload_threads)
            uploaded = time.time()
            print(f"  uploaded {len(files)} files in {uploaded - started:.1f}s", flush=True)
            azurite = children(b"azurite")
            cpu_before = time.process_time(), sum(cpu_seconds(pid) for pid in azurite)
            stopped = watch(host, files, deadline, guard, args.until)
            cpu = time.process_time() - cpu_before[0], sum(cpu_seconds(pid) for pid in azurite) - cpu_before[1]
        except KeyboardInterrupt:
            pass
        finally:
            guard.stop()
            finished = stopped == COMPLETE
            ended = end_workers(EXIT_GRACE if finished else 0)
            if stopped not in (COMPLETE, SUBMITTED):
                withdrawn = withdraw(host, {t.name for t in files.values() if t.claimed is not None})
                print(f"withdrew {withdrawn} files not taken yet, so the host's queued invocations end at once",
                      flush=True)
    ended += end_workers(0)     # runs submitted by invocations that were in flight when the host stopped
    print(f"stopped: {stopped}")
    if files and stopped != "interrupted":
        figures = report(files, started, uploaded)
        taken = sum(1 for t in files.values() if t.claimed is not None) or 1
        print(f"CPU after the uploads: host process {cpu[0]:.1f}s ({cpu[0] / taken * 1000:.0f} ms per file taken; "
              f"the ledger reads of this benchmark included), Azurite {cpu[1]:.1f}s ({cpu[1] / taken * 1000:.0f} ms "
              f"per file)")
        figures.update(host_cpu_ms_per_file=cpu[0] / taken * 1000, azurite_cpu_ms_per_file=cpu[1] / taken * 1000)
        if args.json:
            args.json.write_text(json.dumps({**figures, "stopped": stopped, "poll_interval": settings.poll_interval,
                                             "workers": settings.workers}))
    print(f"lowest available memory: {guard.lowest_mb} MB")
    if ended:
        print(f"terminated {ended} run workers that were still running")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
