"""The local ML backend: the same pipeline definition run by `retrainer.localrun`, MLflow as run store
and model registry.

`submit` creates the MLflow parent run, queues the run and returns its id at once; detached worker
processes (`retrainer.adapters.local_worker`, at most RETRAINER_LOCAL_MAX_RUNS at once) run the pipeline
and, when it ends, publish the RunCompleted or RunStatusChanged event in Azure ML's schema, as Azure ML
would. "Publishing" records the pipeline version per endpoint in the state folder, so a changed
definition is visible as a new version.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Mapping

from retrainer.policy import TAG_RUN_ID
from retrainer.ports import BlobStore, ModelRef, PublishedPipelineRef, RunInfo, RunRef, RunStatus
from retrainer.settings import Settings

TAG_LOCAL_JOB = "retrainer.local_job"    # what the run worker needs, set with the run's creation


class LocalMLBackend:
    def __init__(self, settings: Settings, blobs: BlobStore):
        self._settings = settings
        self._blobs = blobs
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

        definition = self.definition(pipeline_name)
        version = pipelines.pipeline_version(definition)
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
        from retrainer.localrun.store import TAG_PIPELINE, RunStore

        client = self._client()
        experiment_id = RunStore(self._settings.mlflow_tracking_uri).experiment_id(experiment)
        # One call creates the run with the key's tags and the job, as Azure ML's anchor run does
        # (adapters/azureml_v1.py submit): a crash before the job is queued leaves a run that find_run
        # finds and queues. The runner sets the pipeline name again when it starts; a queued run shows it.
        job = {"pipeline": ref.name, "experiment": experiment, "parameters": dict(parameters)}
        run = client.create_run(experiment_id, run_name=f"{ref.name}-{ref.version[:8]}",
                                tags={**tags, TAG_PIPELINE: ref.name, TAG_LOCAL_JOB: json.dumps(job)})
        run_id = run.info.run_id
        for name, value in parameters.items():
            client.log_param(run_id, name, value)
        self._enqueue(run_id, job)
        return RunRef(run_id=run_id, experiment=experiment, tags=dict(tags))

    def _enqueue(self, run_id: str, job: Mapping) -> None:
        from retrainer.adapters.local_queue import RunQueue

        RunQueue(self._settings.state_dir, self._settings.local_max_runs).put(run_id, {**job, "run_id": run_id})
        logs = self._settings.state_dir / "workers"
        logs.mkdir(parents=True, exist_ok=True)
        with open(logs / f"{run_id}.log", "ab") as log:
            # A new session: the run outlives the invocation (and a host restart), as on Azure ML.
            subprocess.Popen([sys.executable, "-m", "retrainer.adapters.local_worker"], stdout=log,
                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                             env=os.environ.copy())

    def find_run(self, tag_key: str, tag_value: str) -> RunRef | None:
        from retrainer.localrun import store

        run_id = store.find_run_by_tag(self._settings.mlflow_tracking_uri, self._settings.experiment,
                                       tag_key, tag_value)
        if run_id is None:
            return None
        self._enqueue_if_never_queued(run_id)
        return RunRef(run_id=run_id, experiment=self._settings.experiment)

    def _enqueue_if_never_queued(self, run_id: str) -> None:
        """Queue a run its submitter created but died before queueing: still running, never seen by the queue."""
        from retrainer.adapters.local_queue import RunQueue

        if RunQueue(self._settings.state_dir, self._settings.local_max_runs).knows(run_id):
            return
        run = self._client().get_run(run_id)
        job = run.data.tags.get(TAG_LOCAL_JOB)
        if run.info.status == "RUNNING" and job:
            self._enqueue(run_id, json.loads(job))

    def get_run(self, run_id: str) -> RunInfo:
        from retrainer.adapters.local_queue import RunQueue
        from retrainer.localrun import store

        info = store.read_run(self._settings.mlflow_tracking_uri, run_id)
        if info.status == RunStatus.RUNNING and not RunQueue(self._settings.state_dir,
                                                             self._settings.local_max_runs).has(run_id):
            # Nothing will ever move it: the host died between creating and queueing it, or its worker
            # died. Fail it, so reconcile reports it instead of waiting forever.
            client = self._client()
            client.set_tag(run_id, store.TAG_ERROR, "its local worker is gone (the process died); submit again")
            client.set_terminated(run_id, status="FAILED")
            info = store.read_run(self._settings.mlflow_tracking_uri, run_id)
        return info

    # -- models (the MLflow model registry)

    def register_model(self, run: RunInfo, name: str, path: str, tags: Mapping[str, str],
                       properties: Mapping[str, str]) -> ModelRef:
        import mlflow

        step = run.model_step(self._settings.model_step)
        client = self._client()
        try:
            client.create_registered_model(name)
        except mlflow.exceptions.MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        version_tags = {**properties, **tags, TAG_RUN_ID: run.run_id}
        version = client.create_model_version(name, source=f"runs:/{step.run_id}/{path}",
                                              run_id=step.run_id, tags=version_tags)
        return _model_ref(version)

    def current_model(self, name: str) -> ModelRef | None:
        versions = self._versions(f"name = '{_quote(name)}'")
        return _model_ref(max(versions, key=lambda v: int(v.version))) if versions else None

    def find_model(self, name: str, run_id: str) -> ModelRef | None:
        versions = self._versions(f"name = '{_quote(name)}' and tags.`{TAG_RUN_ID}` = '{_quote(run_id)}'")
        return _model_ref(min(versions, key=lambda v: int(v.version))) if versions else None

    def _versions(self, filter_string: str) -> list:
        return list(self._client().search_model_versions(filter_string))

    def _client(self):
        from mlflow.tracking import MlflowClient

        self._settings.state_dir.mkdir(parents=True, exist_ok=True)
        return MlflowClient(tracking_uri=self._settings.mlflow_tracking_uri,
                            registry_uri=self._settings.mlflow_tracking_uri)


def _model_ref(version) -> ModelRef:
    # MLflow model versions have tags only: ours are namespaced "retrainer.", the rest are properties.
    stored = dict(version.tags or {})
    tags = {k: v for k, v in stored.items() if k.startswith("retrainer.")}
    properties = {k: v for k, v in stored.items() if k not in tags}
    return ModelRef(name=version.name, version=int(version.version), run_id=tags.get(TAG_RUN_ID),
                    tags=tags, properties=properties)


def _quote(value: str) -> str:
    return value.replace("'", "''")


def _write_atomically(path: Path, document: dict) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(document, indent=2))
    temporary.replace(path)
