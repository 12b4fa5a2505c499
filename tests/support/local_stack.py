"""The app's handlers on real adapters, for the fault suite and bench/faults.py: the Table Storage ledger
and blob store on Azurite (through fault proxies when given), the local backend (MLflow on SQLite, run
workers as subprocesses) with the one-step pipeline pipeline_defs/bench_trivial.py, and a webhook notifier
posting to a real loopback endpoint that records what it gets. The run workers post their run events to
another recorder, from which a test delivers them as it likes (twice, shuffled, late)."""
from __future__ import annotations

import dataclasses
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import MutableMapping

from azure.storage.blob import BlobServiceClient

from retrainer import bootstrap, pipelines, policy
from retrainer.adapters.local_ml import LocalMLBackend
from retrainer.adapters.notify import WebhookNotifier
from retrainer.adapters.table_ledger import TableLedger
from retrainer.adapters.work_queues import StorageWorkQueues
from retrainer.handlers import Deps
from retrainer.retry import Retry
from retrainer.settings import Settings
from tests.support.recorder import Recorder

PIPELINE = "bench_trivial"
ROWS = 5


def configure(env: MutableMapping[str, str], state_dir: Path, connection_string: str, events_url: str,
              *, worker_lease_seconds: int = 3, max_runs: int = 2) -> Settings:
    """App settings for the stack, set in `env` too: the run workers read theirs from the environment."""
    env.update({
        "AzureWebJobsStorage": connection_string, "RETRAINER_DATA_STORAGE": connection_string,
        "RETRAINER_STATE_DIR": str(state_dir), "RETRAINER_PIPELINE": PIPELINE,
        "RETRAINER_PIPELINE_ENDPOINT": "bench-trivial", "RETRAINER_EXPERIMENT": "faults",
        "RETRAINER_MODEL_NAME": "faults_model", "RETRAINER_MODEL_STEP": "count",
        "RETRAINER_MODEL_PATH": "outputs/none", "RETRAINER_PRIMARY_METRIC": "rows",   # no such metric: rejected
        "RETRAINER_LEDGER_TABLE": "faults" + uuid.uuid4().hex[:10],
        "RETRAINER_LOCAL_EVENTS_ENDPOINT": events_url, "RETRAINER_LOCAL_EVENTS_KEY": "local",
        "RETRAINER_LOCAL_WORKER_LEASE_SECONDS": str(worker_lease_seconds),
        "RETRAINER_LOCAL_MAX_RUNS": str(max_runs),
    })
    return Settings.from_env(env)


def deps(settings: Settings, *, ledger_connection: str | None = None, blob_connection: str | None = None,
         retry: Retry | None = None, calls=None, sink: str) -> Deps:
    """One host's dependencies; the connections default to the settings' (a proxy's, when given)."""
    retry = retry or Retry()
    blobs = bootstrap.blob_store(dataclasses.replace(settings, data_connection=blob_connection
                                                     or settings.data_connection))
    return Deps(settings=settings,
                ledger=TableLedger(ledger_connection or settings.storage_connection, settings.ledger_table,
                                   retry=retry),
                blobs=blobs,
                backend=LocalMLBackend(settings, blobs, calls=calls or retry),
                notifier=WebhookNotifier(sink, None, "/retrainer/faults", retry=retry),
                queues=StorageWorkQueues(ledger_connection or settings.storage_connection, retry=retry),
                contract=pipelines.data_contract(settings.pipeline))


def csv_file(index: int) -> bytes:
    rows = "".join(f"{index},{row},{row / 10}\n" for row in range(ROWS))
    return ("file,row,value\n" + rows).encode()


def upload(connection_string: str, names: list[str]) -> list[str]:
    """Upload the files; returns their ledger keys."""
    container = BlobServiceClient.from_connection_string(connection_string).get_container_client("incoming")
    if not container.exists():
        container.create_container()
    return [policy.blob_key("incoming", name, container.get_blob_client(name)
                            .upload_blob(csv_file(index), overwrite=True)["etag"])
            for index, name in enumerate(names)]


@dataclass
class Sent:
    """What the notification sink received, by CloudEvent id."""
    ids: list[str]

    @classmethod
    def of(cls, sink: Recorder) -> "Sent":
        return cls([r.body["id"] for r in sink.received if isinstance(r.body, dict)])

    def twice(self) -> list[str]:
        return sorted({i for i in self.ids if self.ids.count(i) > 1})


def run_workers() -> list[int]:
    """This process's run workers still running (its direct children running local_worker)."""
    return [pid for pid, state, command in _children() if state != "Z" and b"local_worker" in command]


def zombies() -> list[int]:
    """This process's children that exited and were never reaped."""
    return [pid for pid, state, _ in _children() if state == "Z"]


def _children():
    """(pid, state, command line) of this process's children, from /proc."""
    mine = str(os.getpid())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if stat[1] == mine:
                yield int(entry.name), stat[0], (entry / "cmdline").read_bytes()
        except (OSError, IndexError):
            continue    # it ended meanwhile
