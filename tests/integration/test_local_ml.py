"""The local backend over MLflow on SQLite: a run nothing will ever move is reported failed."""
from mlflow.tracking import MlflowClient

from retrainer.adapters.local_ml import LocalMLBackend
from retrainer.adapters.local_queue import RunQueue
from retrainer.localrun.store import RunStore
from retrainer.ports import RunStatus
from retrainer.settings import Settings


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
