"""Hosts starting together on a fresh local state folder: the MLflow store is created once, and works."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from retrainer.adapters.local_ml import LocalMLBackend
from retrainer.settings import Settings

HOSTS = 3
# What a host's first invocations touch: a run lookup (tracking store), then the champion (registry store).
FIRST_START = """
import sys, time
from pathlib import Path

from retrainer.adapters.local_ml import LocalMLBackend
from retrainer.settings import Settings
state, go = Path(sys.argv[1]), Path(sys.argv[2])
backend = LocalMLBackend(Settings(state_dir=state), blobs=None)
print("ready", flush=True)
while not go.exists():
    time.sleep(0.001)
assert backend.find_run("retrainer.key_sha", "0" * 40) is None
assert backend.current_model("diabetes_model") is None
print("ok", flush=True)
"""


def test_hosts_starting_together_on_a_fresh_state_folder_all_work(tmp_path):
    # Creating the tables takes seconds, so hosts released together all meet a database without them.
    state, go = tmp_path / "state", tmp_path / "go"
    hosts = [subprocess.Popen([sys.executable, "-c", FIRST_START, str(state), str(go)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2])
             for _ in range(HOSTS)]
    for host in hosts:
        assert host.stdout.readline().strip() == "ready", host.stderr.read()
    go.touch()    # all imports done: they start on the database together
    results = [(host.wait(timeout=300), host.stderr.read()) for host in hosts]
    failed = [err.strip().splitlines()[-1] for code, err in results if code != 0]
    assert not failed, f"{len(failed)} of {HOSTS} hosts failed: {failed}"


KILLED_WHILE_CREATING = """
import sys
from retrainer.localrun import store
print("ready", flush=True)
store.client(sys.argv[1])
"""


def test_a_host_killed_while_creating_the_store_leaves_one_the_next_start_can_use(tmp_path):
    """Migrating a new database takes seconds; a kill 2.5 s in lands among the migrations."""
    uri = f"sqlite:///{tmp_path / 'state' / 'mlflow.db'}"
    host = subprocess.Popen([sys.executable, "-c", KILLED_WHILE_CREATING, uri], stdout=subprocess.PIPE, text=True,
                            stderr=subprocess.DEVNULL, cwd=Path(__file__).resolve().parents[2])
    assert host.stdout.readline().strip() == "ready"
    time.sleep(2.5)
    host.kill()
    host.wait()

    backend = LocalMLBackend(Settings(state_dir=tmp_path / "state"), blobs=None)
    assert backend.find_run("retrainer.key_sha", "0" * 40) is None
    assert backend.current_model("diabetes_model") is None
