"""The local backend under faults: a run worker killed while its host lives, a data download that runs out
of retries, and transient errors, lost responses and delays at its call seam."""
from __future__ import annotations

import os
import signal

import pytest

from retrainer import policy
from retrainer.localrun import store
from retrainer.ports import RunInfo, RunStatus, StepRunInfo
from retrainer.retry import Retry
from tests.support import local_stack
from tests.support.fault_proxy import DELAY, LOSE_RESPONSE, REFUSE, Fault, proxied_connection_string
from tests.support.faulty_calls import FaultyCalls
from tests.support.recorder import Recorder
from tests.support.waiting import wait_for

NO_WAIT = Retry(attempts=4, base=0.0, sleep=lambda seconds: None)
HANG = 60    # seconds a broken build would wait on a run nothing moves before this test gives up


@pytest.fixture
def stack(tmp_path, monkeypatch, azurite, blob_proxy):
    """Settings for one host whose run workers download their data through the blob fault proxy."""
    run_events = Recorder()
    local_stack.upload(azurite.connection_string, ["a.csv"])
    env = {}
    settings = local_stack.configure(env, tmp_path / "state", azurite.connection_string, run_events.url)
    env["RETRAINER_DATA_STORAGE"] = proxied_connection_string(azurite.connection_string, blob=blob_proxy)
    for name, value in env.items():     # the run workers read their settings from the environment
        monkeypatch.setenv(name, value)
    yield settings
    run_events.close()
    for pid in local_stack.run_workers():
        os.kill(pid, signal.SIGKILL)


def submit(settings, backend, key="blob:incoming/a.csv@1"):
    ref = backend.ensure_published(settings.pipeline)
    return backend.submit(ref, {"input_data": "a.csv"}, settings.experiment,
                          policy.run_tags(key, "blob", ref.version, blob="a.csv", etag="1"))


def ended(backend, run_id):
    info = backend.get_run(run_id)
    return info if info.status in RunStatus.TERMINAL else None


def test_a_run_whose_worker_dies_while_its_host_lives_is_failed_with_the_reason(stack):
    backend = local_stack.deps(stack, sink="http://127.0.0.1:9").backend
    run = submit(stack, backend)
    wait_for(lambda: list((stack.state_dir / "queue" / "taken").glob(f"*-{run.run_id}.json")), "the worker took it")
    [worker] = wait_for(local_stack.run_workers, "the run worker is running")

    os.kill(worker, signal.SIGKILL)     # this process, its host, lives on

    info = wait_for(lambda: ended(backend, run.run_id), "the run is failed", timeout=HANG)
    assert info.status == RunStatus.FAILED
    assert "worker is gone" in info.error
    assert worker not in local_stack.zombies(), "the host reaped its worker"


def test_a_run_whose_data_download_runs_out_of_retries_says_so(stack, blob_proxy):
    blob_proxy.policy = lambda method, path: Fault(REFUSE) if method == "GET" and path.endswith("/a.csv") else None
    backend = local_stack.deps(stack, sink="http://127.0.0.1:9").backend
    run = submit(stack, backend)

    info = wait_for(lambda: ended(backend, run.run_id), "the run ended", timeout=HANG)

    assert info.status == RunStatus.FAILED and not info.steps
    assert "download of 'a.csv'" in info.error and "Connection aborted" in info.error, info.error
    assert blob_proxy.faults[REFUSE] >= 2, "the worker retried the download"


def test_lost_responses_at_the_backend_seam_make_one_run_and_one_model_version(stack, monkeypatch):
    # No worker: the run is made by submit and then stands for a finished one, registered from directly.
    monkeypatch.setattr("retrainer.adapters.local_ml.LocalMLBackend._enqueue", lambda self, *args: None)
    calls = FaultyCalls(NO_WAIT, {"create_run": [LOSE_RESPONSE], "log_param": [REFUSE],
                                  "_run_tagged": [DELAY, LOSE_RESPONSE],
                                  "create_model_version": [LOSE_RESPONSE, REFUSE]})
    backend = local_stack.deps(stack, sink="http://127.0.0.1:9", calls=calls).backend
    key = "blob:incoming/a.csv@1"

    run = submit(stack, backend, key)
    assert backend.find_run(policy.TAG_KEY_HASH, policy.key_digest(key)).run_id == run.run_id
    finished = RunInfo(run.run_id, RunStatus.COMPLETED, steps=[StepRunInfo("count", run.run_id, RunStatus.COMPLETED)])
    model = backend.register_model(finished, stack.model_name, stack.model_path, {}, {})

    client = store.client(stack.mlflow_tracking_uri)
    experiment = client.get_experiment_by_name(stack.experiment).experiment_id
    runs = client.search_runs([experiment], f"tags.`{policy.TAG_KEY_HASH}` = '{policy.key_digest(key)}'")
    assert [r.info.run_id for r in runs] == [run.run_id], "one run for the key"
    versions = client.search_model_versions(f"name = '{stack.model_name}'")
    assert [int(v.version) for v in versions] == [model.version] == [1], "one model version for the run"
    assert calls.injected[("create_run", LOSE_RESPONSE)] == 1
    assert calls.injected[("create_model_version", LOSE_RESPONSE)] == 1
