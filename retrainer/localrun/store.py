"""MLflow as the local run store: one parent run per pipeline run, one child run per step.

Plain MlflowClient calls only (no fluent state, no autolog), so one process can drive parallel steps.
Run ids are MLflow run ids; statuses are mapped to Azure ML's strings (ports.RunStatus).
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import sqlite3
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from retrainer.ports import RunInfo, RunStatus, StepRunInfo
from retrainer.settings import user_cache_dir

TAG_STEP = "retrainer.step"
TAG_PIPELINE = "retrainer.pipeline"
TAG_REUSE_KEY = "retrainer.reuse_key"
TAG_OUTPUTS = "retrainer.outputs"         # JSON {PipelineData name: folder} of an executed step
TAG_LOG = "retrainer.log_path"
TAG_ERROR = "retrainer.error"
TAG_REUSED_FROM = "reused_from"           # the child run that actually executed the step
LOG_ARTIFACT_DIR = "logs"

_TO_RUN_STATUS = {"RUNNING": RunStatus.RUNNING, "SCHEDULED": RunStatus.QUEUED, "FINISHED": RunStatus.COMPLETED,
                  "FAILED": RunStatus.FAILED, "KILLED": RunStatus.CANCELED}
_MAX_TAG = 5000


_SQLITE = "sqlite:///"
_initialised: set[str] = set()
_initialising = threading.Lock()


def client(tracking_uri: str) -> MlflowClient:
    """An MlflowClient on `tracking_uri` as tracking and registry store.

    A SQLite store is created once, whole: under a file lock beside the database, in a scratch file (a copy of
    an empty store migrated once per MLflow version, `_empty_store`) renamed into place. MLflow's SqlAlchemyStore creates the tables (and runs the
    alembic migrations) unguarded whenever one is missing (mlflow/store/tracking/sqlalchemy_store.py and
    model_registry/sqlalchemy_store.py, `__init__`), so hosts starting together on a fresh state folder could
    both migrate ("table _alembic_tmp_tags already exists"), and a host killed while migrating left a
    database every later start failed on ("index ... already exists").
    """
    with _initialising:
        if tracking_uri.startswith(_SQLITE) and tracking_uri not in _initialised:
            _create_once(Path(tracking_uri[len(_SQLITE):]))
            _initialised.add(tracking_uri)
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def _create_once(database: Path) -> None:
    database.parent.mkdir(parents=True, exist_ok=True)
    with open(database.with_name(database.name + ".init.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)    # released when the file closes, or the process dies
        if not database.exists():
            scratch = database.with_name(f".{database.name}.{os.getpid()}.creating")
            scratch.unlink(missing_ok=True)     # a creation killed midway, by a process that had this pid
            try:
                shutil.copyfile(_empty_store(), scratch)
            except OSError:                     # no writable cache folder: MLflow makes it, in the scratch file
                _open(_SQLITE + str(scratch))
            os.replace(scratch, database)
        _open(_SQLITE + str(database))          # MLflow adds its Default experiment on the first open


def _open(uri: str) -> None:
    opened = MlflowClient(tracking_uri=uri, registry_uri=uri)
    opened.search_experiments(max_results=1)          # builds the tracking store
    opened.search_registered_models(max_results=1)    # and the registry store


def _empty_store() -> Path:
    """An empty store made once per MLflow version (`user_cache_dir`): MLflow builds a new database by running
    every alembic migration since its first schema, about 3 s each time (`_initialize_tables`). The copy holds
    the migrated schema and nothing else; MLflow adds the Default experiment when it opens the store, as for a
    store it made (`_initialize_store_state`)."""
    import mlflow
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    folder = user_cache_dir()
    template = folder / f"mlflow-{mlflow.__version__}-empty.db"
    if template.exists():
        return template
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{template.name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if template.exists():
            return template
        temporary = template.with_name(f".{template.name}.{os.getpid()}.tmp")
        temporary.unlink(missing_ok=True)
        made = SqlAlchemyStore(f"{_SQLITE}{temporary}", str(folder / "artifacts"))   # runs the migrations
        made.engine.dispose()
        with sqlite3.connect(temporary) as connection:      # MLflow makes its Default experiment per store
            connection.execute("DELETE FROM experiments")
        connection.close()
        temporary.replace(template)
    return template


class RunNotFoundError(LookupError):
    """No MLflow run has this id."""


@dataclass(frozen=True)
class ReusableStep:
    run_id: str                  # the child run that executed the step
    outputs: dict[str, Path]     # its PipelineData folders


class RunStore:
    def __init__(self, tracking_uri: str) -> None:
        self.tracking_uri = tracking_uri
        self.client = client(tracking_uri)

    def experiment_id(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        try:
            return self.client.create_experiment(name, artifact_location=self._artifact_location(name))
        except MlflowException:    # created meanwhile by another process
            return self.client.get_experiment_by_name(name).experiment_id

    def _artifact_location(self, experiment: str) -> str | None:
        """Artifacts beside the SQLite database: MLflow's default is ./mlruns of whichever process
        happened to create the experiment."""
        if not self.tracking_uri.startswith(_SQLITE):
            return None
        folder = Path(self.tracking_uri[len(_SQLITE):]).resolve().parent / "artifacts" / experiment
        return folder.as_uri()

    def start_parent(self, experiment: str, name: str, tags: Mapping[str, str], parent_run_id: str | None) -> str:
        if parent_run_id is None:
            run = self.client.create_run(self.experiment_id(experiment), tags=dict(tags), run_name=name)
            return run.info.run_id
        self._require(parent_run_id)
        self.client.log_batch(parent_run_id, tags=[RunTag(k, v) for k, v in tags.items()])
        self.client.update_run(parent_run_id, status="RUNNING")
        return parent_run_id

    def start_child(self, parent_run_id: str, step: str, tags: Mapping[str, str]) -> tuple[str, str]:
        """Create the step's run under the parent; returns (run id, experiment id)."""
        experiment_id = self.client.get_run(parent_run_id).info.experiment_id
        run = self.client.create_run(experiment_id, run_name=step,
                                     tags={MLFLOW_PARENT_RUN_ID: parent_run_id, TAG_STEP: step, **tags})
        return run.info.run_id, experiment_id

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        self.client.log_batch(run_id, tags=[RunTag(k, v[:_MAX_TAG]) for k, v in tags.items()])

    def finish(self, run_id: str, succeeded: bool) -> None:
        self.client.set_terminated(run_id, status="FINISHED" if succeeded else "FAILED")

    def metrics(self, run_id: str) -> dict[str, float]:
        return dict(self.client.get_run(run_id).data.metrics)

    def log_folder(self, run_id: str, folder: Path, artifact_path: str | None) -> None:
        if folder.is_dir() and any(folder.iterdir()):
            self.client.log_artifacts(run_id, str(folder), artifact_path)

    def find_reusable(self, reuse_key: str) -> ReusableStep | None:
        """The newest finished step run with this key whose output folders still exist."""
        experiments = [e.experiment_id for e in self.client.search_experiments()]
        runs = self.client.search_runs(
            experiments, f"tags.`{TAG_REUSE_KEY}` = '{reuse_key}' and attributes.status = 'FINISHED'",
            max_results=5, order_by=["attributes.start_time DESC"])
        for run in runs:
            outputs = {name: Path(folder) for name, folder in json.loads(run.data.tags.get(TAG_OUTPUTS, "{}")).items()}
            if all(folder.is_dir() for folder in outputs.values()):
                return ReusableStep(run.info.run_id, outputs)
        return None

    def copy_results(self, source_run_id: str, target_run_id: str) -> dict[str, float]:
        """Give the target run the source's metrics, params and artifacts (its own log aside)."""
        source = self.client.get_run(source_run_id)
        now = int(time.time() * 1000)
        self.client.log_batch(
            target_run_id,
            metrics=[Metric(k, v, now, 0) for k, v in source.data.metrics.items()],
            params=[Param(k, v) for k, v in source.data.params.items()])
        with tempfile.TemporaryDirectory() as scratch:
            for item in self.client.list_artifacts(source_run_id):
                if item.path == LOG_ARTIFACT_DIR:
                    continue
                local = Path(self.client.download_artifacts(source_run_id, item.path, scratch))
                if local.is_dir():
                    self.client.log_artifacts(target_run_id, str(local), item.path)
                else:
                    parent = str(Path(item.path).parent)
                    self.client.log_artifact(target_run_id, str(local), None if parent == "." else parent)
        return dict(source.data.metrics)

    def _require(self, run_id: str):
        try:
            return self.client.get_run(run_id)
        except MlflowException as error:
            raise RunNotFoundError(f"no MLflow run {run_id!r} in {self.tracking_uri}") from error


def read_run(tracking_uri: str, run_id: str) -> RunInfo:
    """A pipeline run (parent) with its step runs, statuses mapped to Azure ML's strings."""
    store = RunStore(tracking_uri)
    parent = store._require(run_id)
    children = store.client.search_runs(
        [parent.info.experiment_id], f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{run_id}'",
        order_by=["attributes.start_time ASC"], max_results=1000)
    steps = [StepRunInfo(name=child.data.tags.get(TAG_STEP, child.info.run_name),
                         run_id=child.info.run_id,
                         status=_TO_RUN_STATUS.get(child.info.status, RunStatus.RUNNING),
                         metrics=dict(child.data.metrics),
                         log_location=child.data.tags.get(TAG_LOG),
                         reused=TAG_REUSED_FROM in child.data.tags)
             for child in children]
    return RunInfo(run_id=run_id, status=_TO_RUN_STATUS.get(parent.info.status, RunStatus.RUNNING),
                   tags={k: v for k, v in parent.data.tags.items() if not k.startswith("mlflow.")},
                   steps=steps, error=parent.data.tags.get(TAG_ERROR))


def find_run_by_tag(tracking_uri: str, experiment: str, key: str, value: str) -> str | None:
    """The newest top-level run in the experiment with tag key=value, if any."""
    mlflow = client(tracking_uri)
    found = mlflow.get_experiment_by_name(experiment)
    if found is None:
        return None
    # MLflow's filter grammar has no escape for quotes or backslashes (ledger keys may hold both): match
    # them with LIKE's one-character wildcard, then compare exactly.
    pattern = "".join("_" if c in "'\"\\%_" else c for c in value)
    runs = mlflow.search_runs([found.experiment_id], f"tags.`{key}` LIKE '{pattern}'",
                              order_by=["attributes.start_time DESC"], max_results=1000)
    matching = [run for run in runs
                if run.data.tags.get(key) == value and MLFLOW_PARENT_RUN_ID not in run.data.tags]
    return matching[0].info.run_id if matching else None


def tag_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)
