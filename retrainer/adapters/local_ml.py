"""The local ML backend: the same pipeline definition run by `retrainer.localrun`, MLflow as run store
and model registry.

`submit` creates the MLflow parent run, queues the run and returns its id at once; detached worker
processes (`retrainer.adapters.local_worker`, at most RETRAINER_LOCAL_MAX_RUNS at once) run the pipeline
and, when it ends, publish the RunCompleted or RunStatusChanged event in Azure ML's schema, as Azure ML
would. "Publishing" records the pipeline version per endpoint in the state folder, so a changed
definition is visible as a new version.

Every MLflow call goes through one seam, `calls` (the shared `Retry` unless given another): a test
injects transient errors, lost responses and delays there, and the RETRAINER_MLFLOW_TRACKING_URI setting
can put an MLflow server behind a fault proxy. The two calls that create something (a run, a model
version) look for what a failed attempt may have made before they try again, so a lost response never
makes a second run or version.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Mapping

from retrainer.policy import TAG_KEY_HASH, TAG_RUN_ID
from retrainer.ports import BlobStore, ModelRef, PublishedPipelineRef, RunInfo, RunRef, RunStatus
from retrainer.retry import Retry, once, retry as default_retry
from retrainer.settings import Settings, user_cache_dir

TAG_LOCAL_JOB = "retrainer.local_job"    # what the run worker needs, set with the run's creation


class LocalMLBackend:
    def __init__(self, settings: Settings, blobs: BlobStore, *, calls: Retry = default_retry):
        self._settings = settings
        self._blobs = blobs
        self._call = calls
        self._published: dict[str, PublishedPipelineRef] = {}
        self._lock = threading.Lock()

    # -- pipelines

    def ensure_published(self, pipeline_name: str) -> PublishedPipelineRef:
        with self._lock:
            if pipeline_name not in self._published:
                self._published[pipeline_name] = self._publish(pipeline_name)
            return self._published[pipeline_name]

    def _publish(self, pipeline_name: str) -> PublishedPipelineRef:
        from retrainer import pipelines

        version = self._version(pipeline_name)
        record = self._settings.state_dir / "endpoints" / f"{self._settings.pipeline_endpoint}.json"
        previous = json.loads(record.read_text()) if record.exists() else {}
        newly = previous.get("default_version") != version
        if newly:
            record.parent.mkdir(parents=True, exist_ok=True)
            versions = previous.get("versions", []) + [version]
            _write_atomically(record, {"pipeline": pipeline_name, "default_version": version,
                                       "versions": versions})
        return PublishedPipelineRef(name=pipeline_name, version=version, pipeline_id=version,
                                    endpoint=self._settings.pipeline_endpoint, newly_published=newly)

    def _version(self, pipeline_name: str) -> str:
        """The definition's version, computed again only when what it is made of changed (`version_inputs`,
        remembered in `user_cache_dir()` for every state folder): building it imports azureml.pipeline.steps and
        hashing its graph takes about 2 s, which every new host process would otherwise pay on its first
        submission. The run worker builds the definition itself."""
        from retrainer import pipelines
        from retrainer.hashing import DigestCache

        settings = self._settings
        arguments = {"datastore": settings.datastore, "container": settings.incoming_container,
                     "compute_target": settings.compute_target,
                     "intermediate_datastore": settings.intermediate_datastore or ""}
        cache = user_cache_dir() / "pipeline-versions.json"
        entry_name = f"{pipelines.DEFINITIONS_DIR / pipeline_name}"     # one entry per checkout and pipeline
        remembered = _read_json(cache).get(entry_name)
        digests = DigestCache()
        if remembered and remembered["inputs"] == pipelines.version_inputs(
                pipeline_name, remembered["source_directories"], arguments, digests):
            return remembered["version"]
        definition = self.definition(pipeline_name)
        folders = pipelines.source_directories(definition)
        entry = {"version": pipelines.pipeline_version(definition), "source_directories": folders,
                 "inputs": pipelines.version_inputs(pipeline_name, folders, arguments, digests)}
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            _write_atomically(cache, {**_read_json(cache), entry_name: entry})
        except OSError:
            pass        # no writable cache folder: computed again by the next process
        return entry["version"]

    def definition(self, pipeline_name: str):
        from retrainer import pipelines

        from retrainer.adapters.local_worker import datastore_container

        settings = self._settings
        datastore = pipelines.local_datastore(settings.datastore, settings.incoming_container)
        # As on Azure: no intermediate datastore named means the workspace's default one.
        intermediate = (pipelines.local_datastore(settings.intermediate_datastore,
                                                  datastore_container(settings, settings.intermediate_datastore))
                        if settings.intermediate_datastore else None)
        return pipelines.load_definition(pipeline_name, datastore=datastore, compute_target=settings.compute_target,
                                         intermediate_datastore=intermediate)

    # -- runs

    def submit(self, ref: PublishedPipelineRef, parameters: Mapping[str, str], experiment: str,
               tags: Mapping[str, str]) -> RunRef:
        from mlflow.entities import Param

        from retrainer.localrun.store import TAG_PIPELINE, RunStore

        client = self._client()
        experiment_id = self._call(RunStore(self._settings.mlflow_tracking_uri).experiment_id, experiment)

        def made_by_a_lost_attempt():
            found = self._run_tagged(TAG_KEY_HASH, tags[TAG_KEY_HASH]) if TAG_KEY_HASH in tags else None
            return client.get_run(found) if found else None
        # One call creates the run with the key's tags and the job, as Azure ML's anchor run does
        # (adapters/azureml_v1.py submit): a crash before the job is queued leaves a run that find_run
        # finds and queues. The runner sets the pipeline name again when it starts; a queued run shows it.
        job = {"pipeline": ref.name, "experiment": experiment, "parameters": dict(parameters)}
        run = self._call(once(client.create_run, made_by_a_lost_attempt), experiment_id,
                         run_name=f"{ref.name}-{ref.version[:8]}",
                         tags={**tags, TAG_PIPELINE: ref.name, TAG_LOCAL_JOB: json.dumps(job)})
        run_id = run.info.run_id
        self._call(client.log_batch, run_id, params=[Param(name, value) for name, value in parameters.items()])
        self._enqueue(run_id, job)
        return RunRef(run_id=run_id, experiment=experiment, tags=dict(tags))

    def _enqueue(self, run_id: str, job: Mapping) -> None:
        from retrainer.adapters.local_queue import RunQueue

        queue = RunQueue.of(self._settings)
        queue.put(run_id, {**job, "run_id": run_id})
        # A worker only when a slot is free: a slot holder drains the queue (the job is in it before this
        # look), and a burst of submissions must not start a Python process each that exits at once.
        if queue.stranded():
            self._start_worker(run_id)

    def _start_worker(self, run_id: str) -> None:
        """A worker for the queue (it exits at once when every slot got held meanwhile); its log is named by
        `run_id`."""
        logs = self._settings.state_dir / "workers"
        logs.mkdir(parents=True, exist_ok=True)
        with open(logs / f"{run_id}.log", "ab") as log:
            # A new session: the run outlives the invocation (and a host restart), as on Azure ML.
            worker = subprocess.Popen([sys.executable, "-m", "retrainer.adapters.local_worker"], stdout=log,
                                      stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                      env=os.environ.copy())
        # Reap it when it exits: a dead child left unwaited is a zombie, which a liveness probe of its pid
        # takes for alive. (A host that dies leaves its workers to init, which reaps them.)
        threading.Thread(target=worker.wait, name=f"reap-worker-{worker.pid}", daemon=True).start()

    def find_run(self, tag_key: str, tag_value: str) -> RunRef | None:
        run_id = self._call(self._run_tagged, tag_key, tag_value)
        if run_id is None:
            return None
        self._enqueue_if_never_queued(run_id)
        return RunRef(run_id=run_id, experiment=self._settings.experiment)

    def _run_tagged(self, tag_key: str, tag_value: str) -> str | None:
        from retrainer.localrun import store

        return store.find_run_by_tag(self._settings.mlflow_tracking_uri, self._settings.experiment, tag_key,
                                     tag_value)

    def _enqueue_if_never_queued(self, run_id: str) -> None:
        """Queue a run its submitter created but died before queueing: still running, never seen by the queue."""
        from retrainer.adapters.local_queue import RunQueue

        if RunQueue.of(self._settings).knows(run_id):
            return
        run = self._call(self._client().get_run, run_id)
        job = run.data.tags.get(TAG_LOCAL_JOB)
        if run.info.status == "RUNNING" and job:
            self._enqueue(run_id, json.loads(job))

    def get_run(self, run_id: str) -> RunInfo:
        from retrainer.adapters.local_queue import RunQueue
        from retrainer.localrun import store

        uri = self._settings.mlflow_tracking_uri
        info = self._call(store.read_run, uri, run_id)
        queue = RunQueue.of(self._settings)
        if info.status == RunStatus.RUNNING and not queue.has(run_id):
            # Nothing will ever move it: the host died between creating and queueing it, or its worker
            # died (its lease ran out). Fail it, so reconcile reports it instead of waiting forever.
            client = self._client()
            self._call(client.set_tag, run_id, store.TAG_ERROR, "its local worker is gone (no heartbeat for "
                       f"{queue.lease_seconds:g}s: the process died or hung); submit again")
            self._call(client.set_terminated, run_id, status="FAILED")
            info = self._call(store.read_run, uri, run_id)
        elif info.status == RunStatus.RUNNING and queue.stranded():
            self._start_worker(run_id)     # its worker died with jobs still waiting: start another
        return info

    # -- models (the MLflow model registry)

    def register_model(self, run: RunInfo, name: str, path: str, tags: Mapping[str, str],
                       properties: Mapping[str, str]) -> ModelRef:
        import mlflow

        step = run.model_step(self._settings.model_step)
        client = self._client()
        try:
            self._call(client.create_registered_model, name)
        except mlflow.exceptions.MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        version_tags = {**properties, **tags, TAG_RUN_ID: run.run_id}
        version = self._call(once(client.create_model_version, lambda: self._version_of_run(name, run.run_id)),
                             name, source=f"runs:/{step.run_id}/{path}", run_id=step.run_id, tags=version_tags)
        return _model_ref(version)

    def current_model(self, name: str) -> ModelRef | None:
        versions = self._call(self._versions, f"name = '{_quote(name)}'")
        return _model_ref(max(versions, key=lambda v: int(v.version))) if versions else None

    def find_model(self, name: str, run_id: str) -> ModelRef | None:
        version = self._call(self._version_of_run, name, run_id)
        return _model_ref(version) if version else None

    def _version_of_run(self, name: str, run_id: str):
        versions = self._versions(f"name = '{_quote(name)}' and tags.`{TAG_RUN_ID}` = '{_quote(run_id)}'")
        return min(versions, key=lambda v: int(v.version)) if versions else None

    def _versions(self, filter_string: str) -> list:
        return list(self._client().search_model_versions(filter_string))

    def _client(self):
        from retrainer.localrun import store

        return store.client(self._settings.mlflow_tracking_uri)


def _model_ref(version) -> ModelRef:
    # MLflow model versions have tags only: ours are namespaced "retrainer.", the rest are properties.
    stored = dict(version.tags or {})
    tags = {k: v for k, v in stored.items() if k.startswith("retrainer.")}
    properties = {k: v for k, v in stored.items() if k not in tags}
    return ModelRef(name=version.name, version=int(version.version), run_id=tags.get(TAG_RUN_ID),
                    tags=tags, properties=properties)


def _quote(value: str) -> str:
    return value.replace("'", "''")


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _write_atomically(path: Path, document: dict) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")   # processes sharing the state folder
    temporary.write_text(json.dumps(document, indent=2))
    temporary.replace(path)
