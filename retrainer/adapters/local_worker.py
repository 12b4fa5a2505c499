"""The detached process behind a local submission: run the pipeline, then report like Azure ML does.

Started by `LocalMLBackend.submit`; reads the same app settings from its environment. When the run ends
it publishes `Microsoft.MachineLearningServices.RunCompleted` (success) or `RunStatusChanged` (failure)
in Azure ML's Event Grid schema to RETRAINER_LOCAL_EVENTS_ENDPOINT with azure-eventgrid's
EventGridPublisherClient.
"""
from __future__ import annotations

import hashlib
import logging
import uuid
from datetime import datetime, timezone
from pathlib import Path

from retrainer.ports import BlobStore, RunStatus
from retrainer.settings import Settings

log = logging.getLogger("retrainer.local_worker")

RUN_TYPE = "azureml.PipelineRun"
DEFAULT_DATASTORE = "workspaceblobstore"    # the name Azure ML gives a workspace's default datastore


def datastore_container(settings: Settings, datastore_name: str | None) -> str:
    """The Azurite container a datastore stands for: RETRAINER_DATASTORE is the incoming container; any
    other datastore (None: the workspace default) is the container of its own name."""
    name = datastore_name or DEFAULT_DATASTORE
    if name == settings.datastore:
        return settings.incoming_container
    return name.lower().replace("_", "-")


def output_store(settings: Settings, blobs: BlobStore):
    """`store_output` for the runner: a step's PipelineData folder written to its datastore's container,
    where Azure ML would put it (localrun.runner.output_path_on_datastore)."""

    def store(datastore_name: str | None, path_on_datastore: str, folder: Path) -> None:
        container = datastore_container(settings, datastore_name)
        for file in sorted(p for p in folder.rglob("*") if p.is_file()):
            blobs.upload(container, f"{path_on_datastore}/{file.relative_to(folder).as_posix()}", str(file))

    return store


def data_fetcher(settings: Settings, blobs: BlobStore):
    """`fetch_data` for the runner: a datastore path (a blob, or a folder of blobs) -> a local copy.

    Copies live under the state folder in a directory named by a hash of the path and the blobs'
    ETags: a blob name never becomes a path of its own, and an unchanged blob is not downloaded (nor,
    by the runner's digest cache, hashed) again.
    """
    container = settings.incoming_container

    def fetch(datastore_name: str, path_on_datastore: str) -> Path:
        if datastore_name != settings.datastore:
            raise ValueError(f"unknown datastore {datastore_name!r}: only RETRAINER_DATASTORE="
                             f"{settings.datastore!r} is mapped to a local container")
        prefix = path_on_datastore.strip("/")
        members = [b for b in blobs.list(container, prefix) if b.name == prefix]
        single = bool(members)
        if not single:
            members = sorted(blobs.list(container, f"{prefix}/" if prefix else ""), key=lambda b: b.name)
        if not members:
            raise FileNotFoundError(f"no blob at {container}/{path_on_datastore}")
        identity = "\n".join(f"{b.name}@{b.etag}" for b in members)
        root = (settings.state_dir / "data" / hashlib.sha256(identity.encode()).hexdigest()[:32]).resolve()
        files = [root / "data.csv"] if single else [root / f"part-{i:05d}.csv" for i in range(len(members))]
        for blob, target in zip(members, files):
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                blobs.download(container, blob.name, str(target))
        return files[0] if single else root

    return fetch


def run_event(settings: Settings, run_id: str, experiment: str, experiment_id: str, status: str,
              tags: dict, properties: dict) -> dict:
    """The event Azure ML sends when a run ends (Event Grid schema, dataVersion 2)."""
    event_type = ("Microsoft.MachineLearningServices.RunCompleted" if status == RunStatus.COMPLETED
                  else "Microsoft.MachineLearningServices.RunStatusChanged")
    data = {"experimentId": experiment_id, "experimentName": experiment, "runId": run_id,
            "runType": RUN_TYPE, "runTags": tags, "runProperties": properties}
    if event_type.endswith("RunStatusChanged"):
        data["runStatus"] = status
    return {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{run_id}/{event_type}")),
            "topic": settings.workspace_topic,
            "subject": f"experiments/{experiment_id}/runs/{run_id}",
            "eventType": event_type, "eventTime": datetime.now(timezone.utc).isoformat(),
            "data": data, "dataVersion": "2"}


def publish(settings: Settings, event: dict) -> None:
    from azure.core.credentials import AzureKeyCredential
    from azure.core.exceptions import HttpResponseError
    from azure.eventgrid import EventGridEvent, EventGridPublisherClient

    from retrainer.retry import retry

    if not settings.local_events_endpoint:
        log.warning("RETRAINER_LOCAL_EVENTS_ENDPOINT is not set: run %s ended but no event was sent; "
                    "the reconcile timer will pick it up", event["data"]["runId"])
        return
    client = EventGridPublisherClient(settings.local_events_endpoint,
                                      AzureKeyCredential(settings.local_events_key or "local"))
    message = EventGridEvent(subject=event["subject"], event_type=event["eventType"], data=event["data"],
                             data_version=event["dataVersion"], topic=event["topic"], id=event["id"],
                             event_time=datetime.fromisoformat(event["eventTime"]))
    try:
        # retry_total=0: ours is the only retry layer. aeg-event-type is what Event Grid sends on
        # delivery; x-functions-key is how a Functions host takes the webhook's system key.
        retry(client.send, [message], retry_total=0, headers={
            "aeg-event-type": "Notification", "x-functions-key": settings.local_events_key or ""})
    except HttpResponseError as error:
        # A Functions host's Event Grid webhook answers 202; the client expects a topic's 200.
        if error.status_code != 202:
            raise


class _Runner:
    """What running a job needs, built once per worker: the imports alone take seconds."""

    def __init__(self, settings: Settings):
        from retrainer import bootstrap
        from retrainer.localrun import store

        self.settings = settings
        self.blobs = bootstrap.blob_store(settings)
        self.backend = bootstrap.local_backend(settings, self.blobs)
        self.client = store.client(settings.mlflow_tracking_uri)

    def run(self, job: dict) -> str:
        from retrainer.localrun import run_pipeline, store

        settings, run_id = self.settings, job["run_id"]
        parent = self.client.get_run(run_id)
        status = RunStatus.FAILED
        try:
            result = run_pipeline(self.backend.definition(job["pipeline"]), parameters=job["parameters"],
                                  state_dir=settings.state_dir, tracking_uri=settings.mlflow_tracking_uri,
                                  experiment=job["experiment"], parent_run_id=run_id,
                                  fetch_data=data_fetcher(settings, self.blobs),
                                  store_output=output_store(settings, self.blobs))
            status = result.status
        except Exception as error:
            log.exception("run %s could not run", run_id)
            if store.TAG_ERROR not in self.client.get_run(run_id).data.tags:   # the runner names most causes
                self.client.set_tag(run_id, store.TAG_ERROR, f"the run could not start: {type(error).__name__}: "
                                                             f"{error}")
            self.client.set_terminated(run_id, status="FAILED")
        tags = {k: v for k, v in parent.data.tags.items() if not k.startswith("mlflow.")}
        event = run_event(settings, run_id, job["experiment"], parent.info.experiment_id, status, tags,
                          {"azureml.runsource": "azureml.PipelineRun"})
        publish(settings, event)
        log.info("run %s ended %s; event %s sent", run_id, status, event["eventType"])
        return status


def main() -> int:
    """Drain the run queue while holding a worker slot; exit at once when every slot is taken."""
    from retrainer.adapters.local_queue import RunQueue

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = Settings.from_env()
    queue = RunQueue.of(settings)
    runner = None
    while True:
        with queue.slot() as held:
            if not held:
                return 0
            while (job := queue.take()) is not None:
                with queue.lease(job["run_id"]):
                    runner = runner or _Runner(settings)
                    try:
                        runner.run(job)
                    except Exception:   # e.g. the event could not be sent: reconcile finishes the run
                        log.exception("run %s: its end could not be reported", job["run_id"])
                queue.done(job["run_id"])
        if not queue.pending():     # a job enqueued while this worker was letting its slot go
            return 0


if __name__ == "__main__":
    raise SystemExit(main())
