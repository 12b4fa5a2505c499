"""The local backend over MLflow on SQLite: a run nothing will ever move is reported failed; a run whose
submitter died before queueing it is found and run once."""
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from retrainer.adapters.local_ml import LocalMLBackend
from retrainer.adapters.local_queue import RunQueue
from retrainer.localrun.store import RunStore
from retrainer.ports import RunStatus
from retrainer.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def backend_and_run(tmp_path):
    settings = Settings(state_dir=tmp_path)
    backend = LocalMLBackend(settings, blobs=None)
    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    experiment_id = RunStore(settings.mlflow_tracking_uri).experiment_id(settings.experiment)
    run_id = client.create_run(experiment_id, tags={"retrainer.key": "blob:incoming/a.csv@0x1"}).info.run_id
    return settings, backend, run_id


def test_a_queued_run_is_running(tmp_path):
    settings, backend, run_id = backend_and_run(tmp_path)
    RunQueue(tmp_path, settings.local_max_runs).put(run_id, {"run_id": run_id})

    assert backend.get_run(run_id).status == RunStatus.RUNNING


def test_a_run_that_was_never_queued_or_lost_its_worker_is_failed_with_the_reason(tmp_path):
    _, backend, run_id = backend_and_run(tmp_path)   # the host died between creating and queueing it

    info = backend.get_run(run_id)

    assert info.status == RunStatus.FAILED
    assert "worker is gone" in info.error


class ProcessDied(BaseException):
    """A fault injected between two calls: the host process is gone (nothing catches a BaseException)."""


def test_a_crash_between_creating_the_run_and_queueing_it_is_recovered_by_find_run_once(
        azurite, tmp_path, monkeypatch):
    """Issue 7 item 4, the local stand-in: MLflow's create_run sets the tags with the run, as Azure ML's anchor
    run does; a submit that dies before queueing leaves a run that find_run finds, queues, and a real worker
    runs to the end: one run, not lost, not doubled."""
    from azure.storage.blob import BlobServiceClient

    from retrainer import bootstrap, policy
    from retrainer.localrun import store
    from tests.support.waiting import wait_for

    for name, value in {"RETRAINER_DATA_STORAGE": azurite.connection_string,
                        "RETRAINER_STATE_DIR": str(tmp_path / "state"),
                        "RETRAINER_INCOMING_PATH": "crashwindow/{name}"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("RETRAINER_LOCAL_EVENTS_ENDPOINT", raising=False)
    settings = Settings.from_env()
    container = BlobServiceClient.from_connection_string(azurite.connection_string).get_container_client(
        "crashwindow")
    if not container.exists():
        container.create_container()
    container.upload_blob("diabetes.csv", (REPO / "data" / "diabetes_sample.csv").read_bytes(), overwrite=True)
    key = "blob:crashwindow/diabetes.csv@0x1"
    digest = policy.key_digest(key)

    def died(self, run_id, job):
        raise ProcessDied()

    backend = bootstrap.local_backend(settings, bootstrap.blob_store(settings))
    ref = backend.ensure_published(settings.pipeline)
    with monkeypatch.context() as fault:
        fault.setattr(LocalMLBackend, "_enqueue", died)
        with pytest.raises(ProcessDied):
            backend.submit(ref, {"input_data": "diabetes.csv"}, settings.experiment,
                           policy.run_tags(key, "blob", ref.version, blob="diabetes.csv", etag="0x1"))

    recovering = bootstrap.local_backend(settings, bootstrap.blob_store(settings))   # the retried invocation
    found = recovering.find_run(policy.TAG_KEY_HASH, digest)
    assert found is not None
    assert recovering.find_run(policy.TAG_KEY_HASH, digest).run_id == found.run_id   # looked at twice: queued once

    info = wait_for(lambda: (i := recovering.get_run(found.run_id)).status in RunStatus.TERMINAL and i,
                    "the recovered run's end")
    assert info.status == RunStatus.COMPLETED, info.error
    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    experiment = client.get_experiment_by_name(settings.experiment)
    parents = [run for run in client.search_runs([experiment.experiment_id])
               if run.data.tags.get(policy.TAG_KEY_HASH) == digest and store.MLFLOW_PARENT_RUN_ID not in run.data.tags]
    assert [run.info.run_id for run in parents] == [found.run_id]


def test_a_new_process_reuses_the_remembered_pipeline_version_without_building_the_definition(tmp_path, monkeypatch):
    from retrainer import pipelines

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    settings = Settings(state_dir=tmp_path, pipeline="bench_trivial")
    first = LocalMLBackend(settings, blobs=None).ensure_published("bench_trivial")
    assert first.version == pipelines.pipeline_version(LocalMLBackend(settings, blobs=None).definition("bench_trivial"))

    def must_not_build(self, pipeline_name):
        raise AssertionError("the definition was built although nothing it is made of changed")

    monkeypatch.setattr(LocalMLBackend, "definition", must_not_build)
    other = Settings(state_dir=tmp_path / "other", pipeline="bench_trivial")
    again = LocalMLBackend(other, blobs=None).ensure_published("bench_trivial")   # another host process and folder

    assert again.version == first.version


def test_a_remembered_version_whose_inputs_changed_is_computed_again(tmp_path, monkeypatch):
    import json

    from retrainer import pipelines

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    settings = Settings(state_dir=tmp_path, pipeline="bench_trivial")
    LocalMLBackend(settings, blobs=None).ensure_published("bench_trivial")
    cache = tmp_path / "cache" / "retrainer" / "pipeline-versions.json"
    remembered = json.loads(cache.read_text())
    entry = str(pipelines.DEFINITIONS_DIR / "bench_trivial")
    remembered[entry].update(version="stale", inputs="made of other files")
    cache.write_text(json.dumps(remembered))

    ref = LocalMLBackend(settings, blobs=None).ensure_published("bench_trivial")

    assert ref.version == pipelines.pipeline_version(LocalMLBackend(settings, blobs=None).definition("bench_trivial"))
    assert json.loads(cache.read_text())[entry]["version"] == ref.version


def test_the_version_inputs_change_with_a_step_file_and_with_the_build_arguments(tmp_path):
    from retrainer import pipelines
    from retrainer.hashing import DigestCache

    (tmp_path / "step.py").write_text("print('one')\n")
    arguments = {"datastore": "training_data", "compute_target": "cpu-cluster"}

    def inputs(**changed):
        return pipelines.version_inputs("bench_trivial", [str(tmp_path)], {**arguments, **changed}, DigestCache())

    before = inputs()
    assert inputs() == before
    assert inputs(compute_target="gpu-cluster") != before
    (tmp_path / "step.py").write_text("print('two')\n")
    assert inputs() != before


def test_a_new_state_folder_gets_an_empty_store_of_its_own_made_from_the_cached_copy(tmp_path, monkeypatch):
    from retrainer.localrun import store

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    first = f"sqlite:///{tmp_path / 'one' / 'mlflow.db'}"
    RunStore(first).client.create_run(RunStore(first).experiment_id("exp"), tags={"retrainer.key": "k"})
    assert list((tmp_path / "cache" / "retrainer").glob("mlflow-*-empty.db"))

    second = RunStore(f"sqlite:///{tmp_path / 'two' / 'mlflow.db'}")

    assert [e.name for e in second.client.search_experiments()] == ["Default"]
    experiment = second.experiment_id("exp")
    run = second.client.create_run(experiment, tags={"retrainer.key": "k2"})
    assert [r.info.run_id for r in second.client.search_runs([experiment])] == [run.info.run_id]
    assert store.find_run_by_tag(first, "exp", "retrainer.key", "k") is not None
