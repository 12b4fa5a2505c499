"""`make demo`: the whole loop on this machine, narrated, over real HTTP and real storage.

A data file lands -> its BlobCreated event queued by the webhook -> validated by the queue worker -> pipeline
published -> run submitted -> prep/train ran or reused -> metrics -> the run's event queued -> gate -> model
version -> notification. Then the same file's event again (no new run), then a file that breaks the data
contract (rejected, quarantined). Exits non-zero with the stage that did not happen.
"""
from __future__ import annotations

import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote

import httpx
from azure.storage.blob import BlobServiceClient

from devhost import azurite, local_loop
from devhost.polling import poll
from devhost.host import DevHost
from devhost.settings import HostSettings

REPO = Path(__file__).resolve().parent.parent
STATE = REPO / ".state" / "demo"
DATA_FILE = "diabetes-2026-11.csv"
BAD_FILE = "diabetes-2026-12.csv"
STAGE_TIMEOUT = 150.0


class Invocations(logging.Handler):
    """The dev host's invocation log: (function, seconds, outcome) per invocation, in order."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.seen: list[tuple[str, float, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg.startswith("function=%s trigger=%s reason=%s"):
            function, _, _, _, seconds, outcome = record.args
            self.seen.append((function, seconds, outcome))

    def first(self, function: str) -> Callable[[], tuple[str, float, str] | None]:
        return lambda: next((i for i in self.seen if i[0] == function and i[2] == "succeeded"), None)


class StageMissing(RuntimeError):
    pass


class Demo:
    def __init__(self, host: DevHost, keys: HostSettings, invocations: Invocations) -> None:
        self.host = host
        self.invocations = invocations
        self.api = httpx.Client(base_url=host.base_url, timeout=30,
                                headers={"x-functions-key": keys.function_key or ""})
        self.blobs = BlobServiceClient.from_connection_string(host.connection_string)
        self.eventgrid_key = keys.eventgrid_key or ""
        self.started = time.monotonic()

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f}s] {text}", flush=True)

    def wait(self, stage: str, probe: Callable[[], Any], timeout: float = STAGE_TIMEOUT) -> Any:
        found = poll(probe, timeout, interval=0.25)
        if not found:
            raise StageMissing(f"{stage} did not happen within {timeout:.0f}s")
        return found

    def rows(self) -> list[dict]:
        response = self.api.get("/api/runs", params={"limit": 50})
        response.raise_for_status()
        return response.json()["runs"]

    def row_for(self, blob: str, etag: str) -> Callable[[], dict | None]:
        def probe() -> dict | None:
            return next((r for r in self.rows()
                         if r.get("blob") == blob and r.get("blob_etag") == etag.strip('"')), None)
        return probe

    def notification(self, kind: str, key: str) -> Callable[[], dict | None]:
        return lambda: next((e for e in self.host.sink_events()
                             if e.get("type") == kind and e.get("subject") == key), None)

    # -- the story

    def good_file(self) -> dict:
        from retrainer.sample_data import write_csv

        path = write_csv(STATE / DATA_FILE, rows=20_000, seed=11)
        incoming = self.blobs.get_container_client("incoming")
        if not incoming.exists():
            incoming.create_container()
        with open(path, "rb") as data:
            etag = incoming.get_blob_client(DATA_FILE).upload_blob(data, overwrite=True)["etag"]
        self.say(f"uploaded incoming/{DATA_FILE} ({path.stat().st_size / 1e6:.1f} MB, 20,000 rows)")

        _, seconds, _ = self.wait("the BlobCreated event", self.invocations.first("blob_events"))
        self.say(f"BlobCreated delivered to blob_events: queued on retrainer-blob-events, answered in "
                 f"{seconds * 1000:.0f} ms")
        row = self.wait("blob seen", self.row_for(DATA_FILE, etag))
        self.say(f"blob_ingest took the message: ledger key {row['key']}")
        row = self.wait("submission", lambda: self._state_beyond(row["key"], "claimed"))
        if row["state"] == "rejected":
            raise StageMissing(f"the good file was rejected: {row.get('reason')}")
        self.say("validated: UTF-8 CSV, every required column, the first rows within the data contract")
        self.say(f"pipeline version {row.get('pipeline_version', '?')[:12]} is the default of endpoint "
                 f"{row.get('endpoint')} (published when the definition changed)")
        self.say(f"run submitted: {row['run_id']}")
        self._narrate_steps(row["run_id"])
        self.wait("the run's event", self.invocations.first("run_finished"))
        self.say("RunCompleted delivered to ml_events: queued on retrainer-run-events; run_finished took it")
        final = self.wait("gate decision", lambda: self._state_beyond(row["key"], "claimed", "submitted"))
        if final["state"] == "failed":
            raise StageMissing(f"the run failed at step {final.get('failed_step')}: see {final.get('log')}")
        self.say(f"gate: {final['state']}: {final.get('reason')}")
        if final["state"] == "registered":
            self.say(f"model {final['model_name']} version {final['model_version']} in the MLflow registry")
        event = self.wait("notification", self.notification(final.get("notification_type", ""), final["key"]))
        self.say(f"notification received by the sink: {event['type']} (id {event['id'][:12]})")
        return final

    def same_event_again(self, first: dict) -> None:
        event = {"id": "redelivery-1", "eventType": "Microsoft.Storage.BlobCreated", "dataVersion": "",
                 "subject": f"/blobServices/default/containers/incoming/blobs/{DATA_FILE}",
                 "eventTime": "2026-11-29T00:00:00Z", "topic": "/subscriptions/local/storage",
                 "data": {"api": "PutBlob", "eTag": first["blob_etag"], "contentLength": first["size"],
                          "url": self.blobs.get_blob_client("incoming", DATA_FILE).url,
                          "blobType": "BlockBlob", "sequencer": "0"}}
        done = len([i for i in self.invocations.seen if i[0] == "blob_ingest"])
        response = self.api.post("/runtime/webhooks/eventgrid", json=[event], params={"functionName": "blob_events"},
                                 headers={"aeg-event-type": "Notification", "x-functions-key": self.eventgrid_key})
        if response.status_code != 202:
            raise StageMissing(f"the redelivered BlobCreated event was refused: HTTP {response.status_code}")
        self.wait("the redelivery's queue run",
                  lambda: len([i for i in self.invocations.seen if i[0] == "blob_ingest"]) > done)
        runs = [r for r in self.rows() if r.get("blob") == DATA_FILE and r.get("run_id")]
        if len(runs) != 1:
            raise StageMissing(f"the same file made {len(runs)} runs")
        self.say(f"the same file's BlobCreated event again (same ETag): HTTP 202, still one run ({runs[0]['run_id']})")

    def bad_file(self) -> None:
        from retrainer.sample_data import write_csv

        lines = write_csv(STATE / BAD_FILE, rows=200, seed=12).read_text().splitlines()
        cells = lines[40].split(",")
        cells[-1] = "7"         # a label the classifier has no class for
        lines[40] = ",".join(cells)
        incoming = self.blobs.get_container_client("incoming")
        etag = incoming.get_blob_client(BAD_FILE).upload_blob("\n".join(lines) + "\n", overwrite=True)["etag"]
        self.say(f"uploaded incoming/{BAD_FILE} (row 41 has Diabetic = 7)")
        row = self.wait("rejection", lambda: (r := self.row_for(BAD_FILE, etag)()) and r["state"] == "rejected" and r)
        self.say(f"rejected: {row['reason']}")
        self.say(f"quarantined as quarantine/{row.get('quarantine')}; the original stays in incoming/")
        self.wait("rejection notification", self.notification("retrainer.data.rejected", row["key"]))
        self.say("notification received by the sink: retrainer.data.rejected")

    def lineage(self) -> None:
        print("\nlineage (GET /api/runs):")
        print(f"  {'state':<15}{'trigger':<9}{'blob':<24}{'run':<34}{'model':<8}notification")
        for row in self.rows():
            if row.get("kind") == "watermark":
                continue
            model = f"v{row['model_version']}" if row.get("model_version") else "-"
            print(f"  {row['state']:<15}{row.get('trigger', '-'):<9}{row.get('blob', '-'):<24}"
                  f"{row.get('run_id', '-'):<34}{model:<8}{row.get('notification_type', '-')}")

    def where_next(self) -> None:
        print(f"""
where to look next:
  the runs, their steps and the registered model in the MLflow UI:
    .venv/bin/mlflow ui --backend-store-uri sqlite:///{STATE / 'mlflow.db'}
  the notifications the sink received: {self.host.sink_file}
  your own host (Azurite included; its keys land in .state/devhost-keys.json):
    .venv/bin/python -m retrainer host
    curl -H "x-functions-key: <DEVHOST_FUNCTION_KEY>" http://127.0.0.1:7071/api/runs""")

    # -- helpers

    def _state_beyond(self, key: str, *states: str) -> dict | None:
        response = self.api.get(f"/api/runs/{quote(key, safe='/:@')}")
        row = response.json() if response.status_code == 200 else None
        return row if row and row["state"] not in states else None

    def _narrate_steps(self, run_id: str) -> None:
        from retrainer.localrun import store

        uri = f"sqlite:///{STATE / 'mlflow.db'}"
        told: set[str] = set()

        def finished_steps():
            run = store.read_run(uri, run_id)
            for step in run.steps:
                if step.name not in told and step.status in ("Completed", "Failed"):
                    told.add(step.name)
                    how = "reused" if step.reused else "ran"
                    shown = ", ".join(f"{k}={v:.4f}".rstrip("0").rstrip(".")
                                      for k, v in sorted(step.metrics.items()))
                    self.say(f"step {step.name}: {how} ({step.status.lower()}) {shown}")
            return run.status in ("Completed", "Failed", "Canceled")

        self.wait("pipeline run", finished_steps, timeout=240)


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # The narration tells what the app decided; its own log lines would say it twice.
    logging.getLogger("retrainer").setLevel(logging.ERROR)
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")     # mlflow sets its level at import
    shutil.rmtree(STATE, ignore_errors=True)
    STATE.mkdir(parents=True)
    # The demo's own state and port; everything else as `python -m retrainer host` would set it.
    os.environ.update({"RETRAINER_STATE_DIR": str(STATE), "DEVHOST_PORT": str(azurite.free_port())})
    settings = local_loop.prepare(REPO)
    print("retrainer demo: starting Azurite and the dev host with function_app ...", flush=True)
    invocations = Invocations()
    devhost_log = logging.getLogger("devhost")
    devhost_log.setLevel(logging.INFO)
    devhost_log.propagate = False       # recorded for the narration, not printed
    devhost_log.addHandler(invocations)
    with DevHost("function_app:app", settings, app_dir=REPO) as host:
        demo = Demo(host, settings, invocations)
        demo.say(f"host serving at {host.base_url}")
        try:
            first = demo.good_file()
            demo.same_event_again(first)
            demo.bad_file()
        except (StageMissing, httpx.HTTPError) as error:
            print(f"demo failed: {error}", file=sys.stderr)
            return 1
        demo.lineage()
        demo.where_next()
    print("\ndemo finished: host and Azurite stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
