"""The whole loop through the dev host: the real function_app, served over HTTP, against Azurite.

One host for the module (auth on, the local backend, state in a temporary folder), driven with the clients a
user has: azure-storage-blob uploads, azure-eventgrid's EventGridPublisherClient posting to the webhooks, and
httpx on /api. The local run worker posts its RunCompleted event back to the host, and notifications land in
the host's sink, so every hop is real HTTP. The cases share one pipeline run where that is honest (the
duplicate, the batch redelivery), and run in file order; each fixture they need is built on first use.
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator
from urllib.parse import quote

import httpx
import pytest
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import HttpResponseError
from azure.eventgrid import EventGridEvent, EventGridPublisherClient
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient, TextBase64DecodePolicy

from devhost import azurite as azurite_launcher
from devhost import local_loop
from devhost.host import DevHost
from devhost.settings import HostSettings
from retrainer import bootstrap, policy
from retrainer.ports import RunStatus
from tests.support.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "diabetes_sample.csv"
DATA_FILE = "diabetes-e2e.csv"
EXPERIMENT, MODEL, LEDGER_TABLE = "diabetes-retraining", "diabetes_model", "retrainerledger"
FINAL_STATES = ("registered", "model_rejected", "failed", "rejected")
POLL_INTERVAL = 0.25  # seconds between the host's container scans
MAX_FILE_BYTES = 4 << 20


class Invocations(logging.Handler):
    """The host's invocation log (one record per invocation: function, trigger, reason, outcome)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.seen: list[tuple[str, str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg.startswith("function=%s trigger=%s reason=%s"):
            function, _, reason, _, _, outcome = record.args
            self.seen.append((function, reason, outcome))

    def of(self, function: str, since: int = 0, outcome: str | None = None) -> list[tuple[str, str, str]]:
        return [i for i in self.seen[since:] if i[0] == function and (outcome is None or i[2] == outcome)]


@dataclass
class Loop:
    connection: str
    state: Path
    settings: HostSettings
    invocations: Invocations
    host: DevHost | None = None
    blobs: BlobServiceClient = field(init=False)

    def __post_init__(self) -> None:
        self.blobs = BlobServiceClient.from_connection_string(self.connection)

    # -- the host
    def start(self) -> DevHost:
        bootstrap.reset()      # the app's dependencies are built from the settings of this instance
        self.host = DevHost("function_app:app", self.settings, app_dir=REPO).start()
        return self.host

    def stop(self) -> None:
        if self.host:
            self.host.stop()
            self.host = None
        bootstrap.reset()

    @property
    def url(self) -> str:
        return self.host.base_url

    # -- the clients
    def api(self, key: str | None = "function") -> httpx.Client:
        """A client with the function key, the master key ("master") or none."""
        keys = {"function": self.settings.function_key, "master": self.settings.master_key}
        headers = {"x-functions-key": keys[key]} if key else {}
        return httpx.Client(base_url=self.url, timeout=30, headers=headers)

    def post_events(self, function: str, events: list[EventGridEvent], *, webhook: str = "eventgrid",
                    key: str | None = "system") -> int:
        """Deliver a batch as Event Grid does; the status code the host answered."""
        client = EventGridPublisherClient(f"{self.url}/runtime/webhooks/{webhook}?functionName={function}",
                                          AzureKeyCredential("a topic key the host does not read"))
        headers = {"aeg-event-type": "Notification"}
        if key == "system":
            headers["x-functions-key"] = self.settings.eventgrid_key
        try:
            # retry_total=0: a 500 must reach the test, not be retried by the client
            client.send(events, retry_total=0, headers=headers)
        except HttpResponseError as error:
            # The Functions host answers 202; the client only counts a topic's 200 as success. On a 404 the
            # client raises its own ResourceNotFoundError (no status) from the service's error.
            return error.status_code or error.__cause__.status_code
        return 200

    def upload(self, name: str, data: bytes) -> str:
        return self.blobs.get_blob_client("incoming", name).upload_blob(data, overwrite=True)["etag"]

    # -- what the loop recorded
    def row(self, key: str) -> dict | None:
        with self.api() as api:
            response = api.get(f"/api/runs/{quote(key, safe='/:@')}")
        return response.json() if response.status_code == 200 else None

    def final_row(self, key: str) -> dict:
        return wait_for(lambda: (row := self.row(key)) and row["state"] in FINAL_STATES and row,
                        f"a final state for {key}")

    def rows(self) -> list[dict]:
        with self.api() as api:
            response = api.get("/api/runs", params={"limit": 500})
        response.raise_for_status()
        return response.json()["runs"]

    def model_versions(self) -> list:
        from mlflow.tracking import MlflowClient

        uri = f"sqlite:///{(self.state / 'mlflow.db').resolve()}"
        return list(MlflowClient(tracking_uri=uri, registry_uri=uri).search_model_versions(f"name = '{MODEL}'"))

    def pipeline_runs(self) -> list:
        from mlflow.tracking import MlflowClient

        uri = f"sqlite:///{(self.state / 'mlflow.db').resolve()}"
        client = MlflowClient(tracking_uri=uri)
        experiment = client.get_experiment_by_name(EXPERIMENT)
        if experiment is None:
            return []
        return [r for r in client.search_runs([experiment.experiment_id], max_results=1000)
                if policy.TAG_KEY in r.data.tags]

    def notifications(self, key: str, kind: str | None = None) -> list[dict]:
        return [e for e in self.host.sink_events() if e.get("subject") == key and (kind is None or e["type"] == kind)]


@pytest.fixture(scope="module")
def loop(tmp_path_factory) -> Iterator[Loop]:
    state = tmp_path_factory.mktemp("host-loop") / "state"
    try:
        storage = azurite_launcher.start()     # ours, so it outlives every host instance of the module
    except azurite_launcher.AzuriteError as error:
        pytest.fail(str(error), pytrace=False)
    invocations = Invocations()
    devhost_log = logging.getLogger("devhost")
    previous_level = devhost_log.level
    devhost_log.setLevel(logging.INFO)
    devhost_log.addHandler(invocations)
    with pytest.MonkeyPatch.context() as env:
        for name in list(os.environ):
            if name.startswith(("RETRAINER_", "DEVHOST_")):
                env.delenv(name)
        values = {
            "AzureWebJobsStorage": storage.connection_string,
            "RETRAINER_DATA_STORAGE": storage.connection_string,
            "RETRAINER_BACKEND": "local",
            "RETRAINER_INCOMING_PATH": "incoming/{name}",
            "RETRAINER_LEDGER_TABLE": LEDGER_TABLE,
            "RETRAINER_PIPELINE": "diabetes_training",
            # The misconfiguration Azure punishes: intermediates written into the watched container (issue 7).
            "RETRAINER_INTERMEDIATE_DATASTORE": "incoming",
            "RETRAINER_MAX_FILE_BYTES": str(MAX_FILE_BYTES),
            # host.json retries a failed message after 30 s; the tests' retries come at once, as an app setting
            # overrides host.json on Azure too
            "AzureFunctionsJobHost__extensions__queues__visibilityTimeout": "00:00:00",
            "RETRAINER_EXPERIMENT": EXPERIMENT,
            "RETRAINER_MODEL_NAME": MODEL,
            "RETRAINER_SCHEDULE": "0 0 0 1 1 *",            # the timers stay out of the way
            "RETRAINER_RECONCILE_SCHEDULE": "0 0 0 1 1 *",
            "RETRAINER_STATE_DIR": str(state),
            "DEVHOST_STATE_DIR": str(state),
            "DEVHOST_PORT": str(azurite_launcher.free_port()),    # fixed: the run worker's event URL must survive a restart
            "DEVHOST_POLL_INTERVAL": str(POLL_INTERVAL),
            "DEVHOST_AUTH": "on",
        }
        for name, value in values.items():
            env.setenv(name, value)
        keys: dict[str, str] = {}
        local_loop.ensure_keys(state, keys)
        for name, value in keys.items():
            env.setenv(name, value)
        settings = HostSettings.from_env()
        wiring: dict[str, str] = {}
        local_loop.wire(settings, wiring)
        for name, value in wiring.items():
            env.setenv(name, value)
        loop = Loop(storage.connection_string, state, settings, invocations)
        loop.blobs.create_container("incoming")     # infra/ creates it on Azure
        try:
            loop.start()
            yield loop
        finally:
            loop.stop()
            devhost_log.removeHandler(invocations)
            devhost_log.setLevel(previous_level)
            storage.stop()


@pytest.fixture(scope="module")
def first(loop: Loop) -> dict:
    """The sample file dropped into the incoming container, taken to its final ledger row."""
    etag = loop.upload(DATA_FILE, SAMPLE.read_bytes())
    return loop.final_row(policy.blob_key("incoming", DATA_FILE, etag))


def blob_created(loop: Loop, name: str, etag: str, size: int, api: str = "PutBlob") -> EventGridEvent:
    return EventGridEvent(
        subject=f"/blobServices/default/containers/incoming/blobs/{name}", event_type="Microsoft.Storage.BlobCreated",
        data={"api": api, "eTag": etag, "contentLength": size, "blobType": "BlockBlob", "sequencer": "1",
              "url": loop.blobs.get_blob_client("incoming", name).url},
        data_version="", topic="/subscriptions/local/resourceGroups/local/providers/Microsoft.Storage/"
                                "storageAccounts/devstoreaccount1")


def run_completed(run_id: str, tags: dict[str, str], experiment_id: str = "1") -> EventGridEvent:
    """The event Azure ML (here, the local run worker) sends for a finished pipeline run; a run's event id
    is derived from its run id, so building it again is a redelivery."""
    from retrainer.adapters.local_worker import run_event
    from retrainer.settings import Settings

    event = run_event(Settings.from_env(), run_id, EXPERIMENT, experiment_id, RunStatus.COMPLETED, tags,
                      {"azureml.runsource": "azureml.PipelineRun"})
    return EventGridEvent(subject=event["subject"], event_type=event["eventType"], data=event["data"],
                          data_version=event["dataVersion"], topic=event["topic"], id=event["id"])


def peek(loop: Loop, queue: str) -> list:
    """The messages waiting in `queue`, as the host wrote them (none while the queue does not exist)."""
    from azure.core.exceptions import ResourceNotFoundError

    client = QueueClient.from_connection_string(loop.connection, queue, message_decode_policy=TextBase64DecodePolicy())
    try:
        return client.peek_messages(max_messages=32)
    except ResourceNotFoundError:
        return []


def settle(loop: Loop) -> None:
    """Let the host run a few container scans (what it would redo, it redoes in that time)."""
    time.sleep(8 * POLL_INTERVAL)


# ---------------------------------------------------------------- the loop

def test_a_dropped_file_becomes_a_registered_model_and_a_notification(loop: Loop, first: dict) -> None:
    assert first["state"] == "registered", first
    assert first["trigger"] == "blob" and first["run_id"]
    versions = loop.model_versions()
    assert [(int(v.version), v.tags.get("retrainer.run_id")) for v in versions] == [(1, first["run_id"])]
    notification = wait_for(lambda: loop.notifications(first["key"], "retrainer.model.registered"),
                            "the registered notification")
    assert len(notification) == 1
    assert notification[0]["data"]["model_version"] == 1
    assert notification[0]["data"]["run_id"] == first["run_id"]


def test_intermediate_data_in_the_watched_container_starts_no_run(loop: Loop, first: dict) -> None:
    """PipelineData lands where Azure ML puts it, under azureml/ of its datastore, here the watched container;
    the intake ignores it by rule, so one file stays one run."""
    outputs = [b.name for b in loop.blobs.get_container_client("incoming").list_blobs(name_starts_with="azureml/")]
    assert any(name.endswith("/prepped_data/data.csv") for name in outputs), outputs
    settle(loop)
    assert [r.info.run_id for r in loop.pipeline_runs()] == [first["run_id"]]
    assert all(not r.get("blob", "").startswith("azureml/") for r in loop.rows())


def test_the_same_file_again_makes_no_second_run(loop: Loop, first: dict) -> None:
    size = SAMPLE.stat().st_size
    before = wait_for(lambda: (row := loop.row(first["key"])) and row["notified"] and row, "the notification recorded")
    since = len(loop.invocations.seen)
    event = blob_created(loop, DATA_FILE, first["blob_etag"], size)
    assert [loop.post_events("blob_events", [event]) for _ in range(3)] == [202, 202, 202]   # at least once
    wait_for(lambda: len(loop.invocations.of("blob_ingest", since, outcome="succeeded")) == 3, "three queue runs")
    assert [r.info.run_id for r in loop.pipeline_runs()] == [first["run_id"]]
    assert [r["key"] for r in loop.rows() if r.get("blob") == DATA_FILE] == [first["key"]]
    assert loop.row(first["key"]) == before


def test_an_overwrite_is_a_new_version_and_a_new_run_that_reuses_the_steps(loop: Loop, first: dict) -> None:
    from retrainer.localrun import store

    etag = loop.upload(DATA_FILE, SAMPLE.read_bytes())       # same bytes, new ETag
    second = loop.final_row(policy.blob_key("incoming", DATA_FILE, etag))
    assert second["key"] != first["key"]
    assert second["run_id"] and second["run_id"] != first["run_id"]
    assert second["state"] in ("registered", "model_rejected"), second     # the gate decided
    run = store.read_run(f"sqlite:///{(loop.state / 'mlflow.db').resolve()}", second["run_id"])
    assert {(s.name, s.reused) for s in run.steps} == {("prep", True), ("train", True)}
    assert loop.row(first["key"])["run_id"] == first["run_id"]


# ---------------------------------------------------------------- what the intake refuses

def test_a_file_created_empty_then_flushed_is_one_run(loop: Loop, first: dict) -> None:
    """A hierarchical-namespace account raises BlobCreated for CreateFile (0 bytes), then for FlushWithClose:
    only the second may start a training, and the first must not reject the file."""
    blob = loop.blobs.get_blob_client("incoming", "adls/diabetes.csv")
    created = blob.upload_blob(b"")["etag"].strip('"')
    flushed = blob.upload_blob(SAMPLE.read_bytes(), overwrite=True)["etag"].strip('"')
    assert loop.post_events("blob_events", [blob_created(loop, "adls/diabetes.csv", created, 0, "CreateFile")]) == 202
    assert loop.post_events("blob_events", [blob_created(loop, "adls/diabetes.csv", flushed, SAMPLE.stat().st_size,
                                                         "FlushWithClose")]) == 202
    row = loop.final_row(policy.blob_key("incoming", "adls/diabetes.csv", flushed))
    assert row["state"] in ("registered", "model_rejected"), row
    assert loop.row(policy.blob_key("incoming", "adls/diabetes.csv", created)) is None
    assert [r["key"] for r in loop.rows() if r.get("blob") == "adls/diabetes.csv"] == [row["key"]]


@pytest.mark.parametrize("name, data, reason_code, says", [
    ("words.csv", lambda lines: lines[:30] + ["9999999,two,95,70,30,80,31.5,0.5,40,1"], "breaks_contract",
     "row 31, column Pregnancies: 'two' is not a number"),
    ("label7.csv", lambda lines: lines[:30] + ["9999999,2,95,70,30,80,31.5,0.5,40,7"], "breaks_contract",
     "row 31, column Diabetic: 7 is not an allowed value"),
    ("huge.csv", lambda lines: lines * (MAX_FILE_BYTES // SAMPLE.stat().st_size + 1), "too_large",
     "RETRAINER_MAX_FILE_BYTES"),
])
def test_a_file_that_cannot_train_is_quarantined_and_reported_without_a_run(loop: Loop, first: dict, name, data,
                                                                             reason_code, says) -> None:
    runs_before = len(loop.pipeline_runs())
    etag = loop.upload(name, ("\n".join(data(SAMPLE.read_text().splitlines())) + "\n").encode())
    row = loop.final_row(policy.blob_key("incoming", name, etag))

    assert (row["state"], row["reason_code"]) == ("rejected", reason_code) and says in row["reason"]
    assert loop.blobs.get_blob_client("quarantine", f"incoming/{name}").exists()
    assert loop.blobs.get_blob_client("incoming", name).exists(), "the original is never deleted"
    wait_for(lambda: loop.notifications(row["key"], "retrainer.data.rejected"), "the data.rejected notification")
    assert len(loop.pipeline_runs()) == runs_before


# ---------------------------------------------------------------- the Event Grid webhook

def test_the_subscription_validation_handshake(loop: Loop) -> None:
    event = {"id": "validation-1", "topic": "/subscriptions/local", "subject": "", "dataVersion": "1",
             "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent", "eventTime": "2026-11-29T00:00:00Z",
             "data": {"validationCode": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"}}
    with loop.api(key=None) as api:
        response = api.post("/runtime/webhooks/eventgrid", params={"functionName": "ml_events"}, json=[event],
                            headers={"aeg-event-type": "SubscriptionValidation",
                                     "x-functions-key": loop.settings.eventgrid_key})
    assert response.status_code == 200
    assert response.json() == {"validationResponse": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"}


def test_no_key_is_401_and_an_unknown_function_is_404(loop: Loop, first: dict) -> None:
    event = run_completed(first["run_id"], {})
    assert loop.post_events("ml_events", [event], key=None) == 401
    assert loop.post_events("no_such_function", [event]) == 404
    with loop.api(key=None) as api:
        assert api.get("/api/runs").status_code == 401


def test_a_run_event_whose_work_keeps_failing_ends_poisoned_and_reported(loop: Loop, first: dict) -> None:
    """The webhook answers 202 at once: it only queues. The first event is the registered run's RunCompleted
    again; the second names a run its ledger row claimed (a worker died between submit and record) but that the
    run store does not have, so run_finished fails on every attempt, the host moves its message to
    retrainer-run-events-poison after maxDequeueCount, and reconcile reports it once."""
    from mlflow.tracking import MlflowClient

    from retrainer.adapters.table_ledger import TableLedger

    uri = f"sqlite:///{(loop.state / 'mlflow.db').resolve()}"
    run = MlflowClient(tracking_uri=uri).get_run(first["run_id"])
    tags = {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.")}
    orphan_key = policy.blob_key("incoming", "orphan.csv", "0x8DCORPHAN")
    TableLedger(loop.connection, LEDGER_TABLE).claim(orphan_key, "blob", {"container": "incoming",
                                                                               "blob": "orphan.csv"})
    orphan = run_completed("f" * 32, policy.run_tags(orphan_key, "blob", first["pipeline_version"]),
                           run.info.experiment_id)
    batch = [run_completed(first["run_id"], tags, run.info.experiment_id), orphan]
    versions_before = [v.version for v in loop.model_versions()]
    since = len(loop.invocations.seen)

    assert loop.post_events("ml_events", batch) == 202
    [poisoned] = wait_for(lambda: peek(loop, "retrainer-run-events-poison"), "the message poisoned after 5 attempts")
    assert json.loads(poisoned.content)["data"]["runId"] == "f" * 32
    assert len(loop.invocations.of("run_finished", since, outcome="failed")) == 5
    assert [v.version for v in loop.model_versions()] == versions_before
    assert len(loop.notifications(first["key"])) == 1
    assert loop.row(first["key"])["state"] == "registered"
    assert loop.row(orphan_key)["state"] == "claimed"

    with loop.api("master") as admin:       # the reconcile timer, fired by hand (twice: reported once)
        for _ in range(2):
            assert admin.post("/admin/functions/reconcile", json={"input": ""}).status_code == 202
    reported = wait_for(lambda: [e for e in loop.host.sink_events() if e["type"] == "retrainer.work.poisoned"],
                        "the poisoned notification")
    settle(loop)
    assert len([e for e in loop.host.sink_events() if e["type"] == "retrainer.work.poisoned"]) == 1
    assert "f" * 32 in reported[0]["data"]["body"]


# ---------------------------------------------------------------- restarts and poison

def test_a_restarted_host_reprocesses_no_receipted_blob(loop: Loop, first: dict) -> None:
    runs_before = {r.info.run_id for r in loop.pipeline_runs()}
    rows_before = {r["key"]: r["updated"] for r in loop.rows()}
    loop.stop()
    since = len(loop.invocations.seen)
    loop.start()
    # a new file after the restart: once the host has handled it, it has scanned every older blob too
    etag = loop.upload("after-restart.csv", b"respondent,answer\n1,yes\n")
    marker = loop.final_row(policy.blob_key("incoming", "after-restart.csv", etag))
    assert marker["state"] == "rejected"
    settle(loop)
    assert len(loop.invocations.of("blob_ingest", since)) == 1
    assert {r.info.run_id for r in loop.pipeline_runs()} == runs_before
    assert {k: v for k, v in ((r["key"], r["updated"]) for r in loop.rows()) if k != marker["key"]} == rows_before


def test_a_file_whose_work_fails_5_times_is_poison(loop: Loop, first: dict, monkeypatch) -> None:
    loop.stop()
    monkeypatch.setenv("RETRAINER_PIPELINE", "no_such_pipeline")   # every invocation of blob_ingest fails
    since = len(loop.invocations.seen)
    try:
        loop.start()
        loop.upload("poison.csv", SAMPLE.read_bytes()[:4096].rsplit(b"\n", 1)[0] + b"\n")
        messages = wait_for(lambda: [json.loads(m.content) for m in peek(loop, "retrainer-blob-events-poison")
                                     if "poison.csv" in m.content], "the poisoned message")
        settle(loop)
    finally:
        loop.stop()
    assert len(loop.invocations.of("blob_ingest", since, outcome="failed")) == 5
    assert loop.invocations.of("blob_ingest", since, outcome="succeeded") == []
    assert [(m["container"], m["name"]) for m in messages] == [("incoming", "poison.csv")]
