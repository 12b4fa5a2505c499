"""The intake's figures (issue 10), printed side by side with their goals in one run.

    .venv/bin/python bench/intake.py [--only webhook,first-file,large-file,burst] [--events 2000] [--files 1000]

- webhook: the real `blob_events` and `ml_events` user functions called in process, warm, with the
  func.EventGridEvent and func.Out the Python worker passes: p50/p99 per event (parse, filter, one message).
- first-file: a fresh interpreter starts a DevHost as `make demo` does (local_loop.prepare, its own Azurite, the
  local backend), drops one file and times drop -> its ledger row has a run id (GET /api/runs); then a second
  file on the warm host. Twice: on a new state folder, and on that folder again (a restarted host). Each
  invocation's phases are timed (wall and CPU of the invocation's thread): building the dependencies, claim,
  properties, prefix read, validation, ensure_published, find_run, submit, record.
- large-file: `python -m retrainer host` as its own process, Azurite's data on disk under /tmp
  (DEVHOST_AZURITE_DIR, deleted after), RETRAINER_MAX_FILE_BYTES at its 1 GiB default. A small file that breaks
  the data contract warms the same rejection path; then the host's peak RSS is reset (/proc/PID/clear_refs) and
  a file of 1 GiB + 1 byte is uploaded in staged blocks (this process holds one 8 MiB block); the host's peak
  RSS once the file is rejected, against its RSS before.
- burst: bench/ingest.py in its own process (1,000 files at once to pipeline_defs/bench_trivial.py), stopped once
  every file is submitted (its completion figures: run bench/ingest.py alone).

Everything runs on loopback and stops by itself. It prints figures; it never passes or fails on time.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

GiB = 1 << 30
BLOCK = 8 << 20
GOALS = {"webhook_p99_ms": 20.0, "first_file_s": 3.0, "large_file_rss_mb": 50.0, "burst_files_per_s": 25.0,
         "burst_p50_s": 5.0}
BEFORE = {"first_file_s": 8.3, "burst_files_per_s": 5.4, "burst_p50_s": 100.0}     # the figures


# ---------------------------------------------------------------- webhook

def webhook(events: int) -> dict[str, Any]:
    import io
    import logging
    from datetime import datetime as dt

    import azure.functions as func

    os.environ.update({"RETRAINER_AML_SUBSCRIPTION_ID": "sub-1", "RETRAINER_AML_RESOURCE_GROUP": "rg",
                       "RETRAINER_AML_WORKSPACE": "ws"})
    import function_app
    from retrainer import bootstrap, policy

    bootstrap.reset()
    # As the worker does: the app's INFO lines are handled (here formatted into memory), not dropped.
    sink = logging.StreamHandler(io.StringIO())
    logging.getLogger("retrainer").addHandler(sink)
    logging.getLogger("retrainer").setLevel(logging.INFO)
    functions = {f.get_function_name(): f.get_user_function() for f in function_app.app.get_functions()}
    topic = bootstrap.settings().workspace_topic
    when = dt(2026, 11, 30, 2, tzinfo=timezone.utc)

    class Out(func.Out):
        def __init__(self) -> None:
            self.value = None

        def set(self, val) -> None:
            self.value = val

        def get(self):
            return self.value

    def blob_event(i: int) -> func.EventGridEvent:
        name = f"2026/file-{i}.csv"
        return func.EventGridEvent(
            id=f"b-{i}", topic="/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/data",
            subject=f"/blobServices/default/containers/incoming/blobs/{name}", event_type="Microsoft.Storage.BlobCreated",
            data={"api": "PutBlob", "eTag": f"0x{i:X}", "contentLength": 1000 + i, "blobType": "BlockBlob",
                  "url": f"https://data.blob.core.windows.net/incoming/{name}", "sequencer": f"{i:032x}",
                  "contentType": "text/csv", "clientRequestId": "c", "requestId": "r"},
            data_version="", event_time=when)

    def run_event(i: int) -> func.EventGridEvent:
        return func.EventGridEvent(
            id=f"r-{i}", topic=topic, subject=f"experiments/x/runs/run-{i}",
            event_type="Microsoft.MachineLearningServices.RunCompleted",
            data={"runId": f"run-{i}", "runType": "azureml.PipelineRun", "experimentName": "exp", "experimentId": "x",
                  "runTags": {policy.TAG_APP: "retrainer", policy.TAG_KEY: f"blob:incoming/{i}.csv@0x1"},
                  "runProperties": {"azureml.runsource": "azureml.PipelineRun"}},
            data_version="2", event_time=when)

    figures: dict[str, Any] = {}
    for name, make in (("blob_events", blob_event), ("ml_events", run_event)):
        function = functions[name]
        inputs = [make(i) for i in range(events + 200)]
        for event in inputs[:200]:                      # warm: imports, settings, caches
            function(event, Out())
        times = []
        for event in inputs[200:]:
            out = Out()
            started = time.perf_counter_ns()
            function(event, out)
            times.append((time.perf_counter_ns() - started) / 1e6)
            assert out.value, f"{name} queued nothing for {event.id}"
        sink.stream = io.StringIO()
        times.sort()
        figures[name] = {"p50_ms": statistics.median(times), "p99_ms": times[int(0.99 * (len(times) - 1))],
                         "max_ms": times[-1], "n": len(times)}
    return figures


# ---------------------------------------------------------------- first file (child process)

class Phases:
    """Wall and CPU time of the invocation's calls into the ports, recorded per file."""

    def __init__(self) -> None:
        self.current: list[tuple[str, float, float]] = []

    def timed(self, name: str, call: Callable) -> Callable:
        def wrapper(*args, **kwargs):
            wall, cpu = time.perf_counter(), time.thread_time()
            try:
                return call(*args, **kwargs)
            finally:
                self.current.append((name, time.perf_counter() - wall, time.thread_time() - cpu))
        return wrapper

    def take(self) -> list[tuple[str, float, float]]:
        taken, self.current = self.current, []
        return taken


def first_file_child(state: Path, poll_interval: float | None) -> dict[str, Any]:
    started = time.monotonic()
    import logging

    import httpx
    from azure.storage.blob import BlobServiceClient

    from devhost import azurite, local_loop
    from devhost.host import DevHost
    from retrainer import bootstrap, handlers

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("retrainer").setLevel(logging.ERROR)
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    state.mkdir(parents=True, exist_ok=True)
    os.environ.update({"RETRAINER_STATE_DIR": str(state), "DEVHOST_PORT": str(azurite.free_port()),
                       "RETRAINER_SCHEDULE": "0 0 0 1 1 *", "RETRAINER_RECONCILE_SCHEDULE": "0 0 0 1 1 *"})
    if poll_interval:
        os.environ["DEVHOST_POLL_INTERVAL"] = str(poll_interval)
    settings = local_loop.prepare(REPO)

    phases = Phases()
    build = bootstrap.build

    def timed_build(current):
        deps = phases.timed("build the dependencies (first use)", build)(current)
        for adapter, methods in ((deps.ledger, ("claim", "update")), (deps.blobs, ("properties", "read_prefix")),
                                 (deps.backend, ("ensure_published", "find_run", "submit"))):
            for method in methods:
                setattr(adapter, method, phases.timed(f"{type(adapter).__name__}.{method}", getattr(adapter, method)))
        return deps

    bootstrap.build = timed_build
    handlers.check_data_file = phases.timed("validation (check_data_file)", handlers.check_data_file)
    handlers.data_arrived = phases.timed("data_arrived (the whole invocation)", handlers.data_arrived)

    from retrainer.sample_data import write_csv

    data = write_csv(state / "bench-first.csv", rows=2000, seed=3).read_bytes()
    result: dict[str, Any] = {}
    with DevHost("function_app:app", settings, app_dir=REPO) as host:
        result["host_start_s"] = time.monotonic() - started
        api = httpx.Client(base_url=host.base_url, timeout=60, headers={"x-functions-key": settings.function_key or ""})
        incoming = BlobServiceClient.from_connection_string(host.connection_string).get_container_client("incoming")
        for label in ("first", "second"):
            name = f"first-file-{label}-{time.time_ns()}.csv"
            dropped = time.monotonic()
            incoming.get_blob_client(name).upload_blob(data, overwrite=True)
            while True:
                rows = api.get("/api/runs", params={"limit": 20}).json()["runs"]
                row = next((r for r in rows if r.get("blob") == name and r.get("run_id")), None)
                if row or time.monotonic() - dropped > 300:
                    break
                time.sleep(0.02)
            result[label] = {"drop_to_submitted_s": time.monotonic() - dropped if row else None,
                             "phases": phases.take()}
    return result


def first_file(poll_interval: float | None) -> dict[str, Any]:
    state = Path(tempfile.mkdtemp(prefix="bench-first-file-"))
    try:
        results = {}
        cases = (("new state folder, no cached empty MLflow store (a machine's first)", state / "a",
                  {"XDG_CACHE_HOME": str(state / "cache")}),
                 ("new state folder", state / "b", {}),
                 ("same folder again (host restart)", state / "b", {}))
        for label, folder, extra in cases:
            completed = subprocess.run([sys.executable, __file__, "--child", "first-file", "--state", str(folder),
                                        *(["--poll-interval", str(poll_interval)] if poll_interval else [])],
                                       capture_output=True, text=True, timeout=900, cwd=REPO,
                                       env={**os.environ, **extra})
            if completed.returncode != 0:
                raise RuntimeError(f"first-file child failed:\n{completed.stderr[-3000:]}")
            results[label] = json.loads(completed.stdout.strip().splitlines()[-1])
            end_workers_under(folder)
        return results
    finally:
        shutil.rmtree(state, ignore_errors=True)


def end_workers_under(state: Path) -> None:
    """The local run workers started for the bench's files (by pid, found by their state folder)."""
    time.sleep(1)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"local_worker" in command and f"RETRAINER_STATE_DIR={state}".encode() in environ:
            try:
                os.kill(int(entry.name), signal.SIGTERM)
            except ProcessLookupError:
                pass


# ---------------------------------------------------------------- large file

def memory(pid: int) -> dict[str, int]:
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) * 1024
    return values


def large_file(size: int) -> dict[str, Any]:
    import httpx
    from azure.storage.blob import BlobBlock, BlobServiceClient

    from devhost import azurite

    work = Path(tempfile.mkdtemp(prefix="bench-large-file-", dir="/tmp"))
    state = work / "state"
    env = {**os.environ, "RETRAINER_STATE_DIR": str(state), "DEVHOST_AZURITE_DIR": str(work / "azurite"),
           "DEVHOST_PORT": str(azurite.free_port()), "RETRAINER_SCHEDULE": "0 0 0 1 1 *",
           "RETRAINER_RECONCILE_SCHEDULE": "0 0 0 1 1 *", "AzureWebJobsStorage": "", "RETRAINER_DATA_STORAGE": ""}
    env.pop("RETRAINER_MAX_FILE_BYTES", None)       # its default: 1 GiB
    log = open(work / "host.log", "w")
    host = subprocess.Popen([sys.executable, "-m", "retrainer", "host", "--app-dir", str(REPO)], cwd=REPO, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        keys = wait(lambda: _json(state / "devhost-keys.json"), 120, "the host's keys")
        base = f"http://127.0.0.1:{env['DEVHOST_PORT']}"
        api = httpx.Client(base_url=base, timeout=60, headers={"x-functions-key": keys["DEVHOST_FUNCTION_KEY"]})
        wait(lambda: _ok(api, "/api/health"), 180, "the host's health endpoint")
        connection = wait(lambda: _azurite_connection(work / "host.log"), 60, "the host's Azurite")
        incoming = BlobServiceClient.from_connection_string(connection).get_container_client("incoming")
        wait(lambda: incoming.exists(), 60, "the incoming container")

        def rejected(name: str) -> dict | None:
            rows = api.get("/api/runs", params={"limit": 20}).json()["runs"]
            return next((r for r in rows if r.get("blob") == name and r.get("state") == "rejected"), None)

        # the same path warmed: claim, rejection, quarantine copy, notification
        incoming.upload_blob("warm.csv", b"file,row,value\nx,not a number,1\n", overwrite=True)
        warm = wait(lambda: rejected("warm.csv"), 300, "the warm-up file's rejection")
        before = memory(host.pid)
        Path(f"/proc/{host.pid}/clear_refs").write_text("5")     # VmHWM := VmRSS
        reset = memory(host.pid)

        blob = incoming.get_blob_client("huge.csv")
        block = (b"file,row,value\n" + b"huge,1,0.5\n" * (BLOCK // 11))[:BLOCK]
        ids, sent, uploading = [], 0, time.monotonic()
        while sent < size:
            chunk = block if size - sent >= BLOCK else block[: size - sent]
            block_id = f"{len(ids):08d}"
            blob.stage_block(block_id, chunk)
            ids.append(BlobBlock(block_id=block_id))
            sent += len(chunk)
        blob.commit_block_list(ids)
        uploaded = time.monotonic()
        row = wait(lambda: rejected("huge.csv"), 600, "the 1 GiB file's rejection")
        judged = time.monotonic()
        after = memory(host.pid)
        return {"size": size, "upload_s": uploaded - uploading, "drop_to_rejected_s": judged - uploaded,
                "reason": row.get("reason"), "quarantine": row.get("quarantine"), "warm_reason": warm.get("reason"),
                "rss_before": reset["VmRSS"], "peak_before_reset": before["VmHWM"], "peak_after": after["VmHWM"],
                "rss_after": after["VmRSS"]}
    finally:
        host.send_signal(signal.SIGINT)
        try:
            host.wait(60)
        except subprocess.TimeoutExpired:
            host.kill()
        log.close()
        end_workers_under(state)
        shutil.rmtree(work, ignore_errors=True)


def _json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _ok(api, path: str) -> bool:
    import httpx

    try:
        return api.get(path).status_code == 200
    except httpx.HTTPError:
        return False


def _azurite_connection(log: Path) -> str | None:
    """The host's Azurite, from its log line "started Azurite (blob P, queue Q, table T)"."""
    import re

    match = re.search(r"started Azurite \(blob (\d+), queue (\d+), table (\d+)\)", log.read_text())
    if not match:
        return None
    from devhost.azurite import Azurite

    blob, queue, table = (int(port) for port in match.groups())
    return Azurite(blob, queue, table, process=None, workdir=log.parent).connection_string


def wait(probe: Callable[[], Any], timeout: float, what: str) -> Any:
    from devhost.polling import poll

    found = poll(probe, timeout, interval=0.1)
    if not found:
        raise TimeoutError(f"{what} did not happen within {timeout:.0f}s")
    return found


# ---------------------------------------------------------------- burst

def burst(files: int, workers: int | None, poll_interval: float | None) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        command = [sys.executable, str(REPO / "bench" / "ingest.py"), "--files", str(files), "--until", "submitted",
                   "--json", out.name]
        if workers:
            command += ["--workers", str(workers)]
        if poll_interval:
            command += ["--poll-interval", str(poll_interval)]
        completed = subprocess.run(command, cwd=REPO, text=True, capture_output=True, timeout=3900)
        print(completed.stdout, end="")
        if completed.returncode != 0:
            raise RuntimeError(f"bench/ingest.py failed:\n{completed.stderr[-3000:]}")
        return json.loads(Path(out.name).read_text())


# ---------------------------------------------------------------- report

def phase_table(phases: list) -> str:
    lines = []
    for name, wall, cpu in phases:
        lines.append(f"      {name:<42} {wall * 1000:8.1f} ms wall {cpu * 1000:8.1f} ms CPU")
    return "\n".join(lines)


def ratio(measured: float | None, goal: float) -> str:
    return "-" if measured is None else f"{measured / goal:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/intake.py", description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="webhook,first-file,large-file,burst",
                        help="comma-separated figures to measure (default: all four)")
    parser.add_argument("--events", type=int, default=2000, help="webhook invocations timed per function")
    parser.add_argument("--files", type=int, default=1000, help="files dropped at once in the burst")
    parser.add_argument("--large-size", type=int, default=GiB + 1, help="bytes of the large file (1 GiB + 1)")
    parser.add_argument("--workers", type=int, help="DEVHOST_WORKERS for the burst (default: the host's)")
    parser.add_argument("--poll-interval", type=float, help="DEVHOST_POLL_INTERVAL (default: the host's, 1 s)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--state", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child == "first-file":
        print(json.dumps(first_file_child(args.state, args.poll_interval)))
        return 0
    wanted = [w.strip() for w in args.only.split(",") if w.strip()]
    unknown = set(wanted) - {"webhook", "first-file", "large-file", "burst"}
    if unknown:
        parser.error(f"unknown figure(s) {', '.join(sorted(unknown))}: choose from webhook, first-file, large-file, burst")

    print(f"intake figures: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"load average {os.getloadavg()[0]:.1f} at start, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC", flush=True)
    rows: list[tuple[str, str, str, str, str]] = []
    if "webhook" in wanted:
        figures = webhook(args.events)
        for name, f in figures.items():
            print(f"webhook {name}: p50 {f['p50_ms']:.3f} ms  p99 {f['p99_ms']:.3f} ms  max {f['max_ms']:.1f} ms "
                  f"(n={f['n']})", flush=True)
            rows.append((f"{name} invocation p99, in process, warm", f"{f['p99_ms']:.2f} ms", "<= 20 ms", "",
                         ratio(f["p99_ms"], GOALS["webhook_p99_ms"])))
    if "first-file" in wanted:
        results = first_file(args.poll_interval)
        for label, result in results.items():
            print(f"first file, {label}: host started in {result['host_start_s']:.2f}s", flush=True)
            for which in ("first", "second"):
                seconds = result[which]["drop_to_submitted_s"]
                print(f"  {which} file: drop -> submitted {seconds:.2f}s; its invocation's phases:")
                print(phase_table(result[which]["phases"]))
            seconds = result["first"]["drop_to_submitted_s"]
            rows.append((f"first file after a cold host start, {label}", f"{seconds:.2f} s", "<= 3 s",
                         f"{BEFORE['first_file_s']} s", ratio(seconds, GOALS["first_file_s"])))
            warm = result["second"]["drop_to_submitted_s"]
            rows.append((f"  next file on that warm host", f"{warm:.2f} s", "", "", ""))
    if "large-file" in wanted:
        f = large_file(args.large_size)
        growth = (f["peak_after"] - f["rss_before"]) / 1e6
        print(f"large file: {f['size']:,} bytes uploaded in {f['upload_s']:.1f}s, rejected {f['drop_to_rejected_s']:.1f}s "
              f"after: {f['reason']}; quarantined as {f['quarantine']}", flush=True)
        print(f"  host RSS before {f['rss_before'] / 1e6:.1f} MB (peak since start {f['peak_before_reset'] / 1e6:.1f} MB), "
              f"peak while judging it {f['peak_after'] / 1e6:.1f} MB, RSS after {f['rss_after'] / 1e6:.1f} MB")
        rows.append(("1 GiB + 1 byte file: host peak RSS growth", f"{growth:.1f} MB", "<= 50 MB", "",
                     ratio(growth, GOALS["large_file_rss_mb"])))
    if "burst" in wanted:
        f = burst(args.files, args.workers, args.poll_interval)
        rows.append((f"{f['files']} files at once: to submission", f"{f['submission_rate']:.2f} files/s", ">= 25 files/s",
                     f"{BEFORE['burst_files_per_s']} files/s", f"{f['submission_rate'] / GOALS['burst_files_per_s']:.2f}"))
        rows.append(("  drop-to-submission p50", f"{f['submission_p50']:.1f} s", "<= 5 s",
                     f"{BEFORE['burst_p50_s']:.0f} s", ratio(f["submission_p50"], GOALS["burst_p50_s"])))
    print(f"\n{'figure':<58}{'measured':>16}{'goal':>16}{'before':>12}{'measured/goal':>15}")
    for row in rows:
        print(f"{row[0]:<58}{row[1]:>16}{row[2]:>16}{row[3]:>12}{row[4]:>15}")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
