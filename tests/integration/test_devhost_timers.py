"""Timer triggers on a running dev host: status blobs, past due fired once, run_on_startup, and a
schedule that comes due while the host runs."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from azure.storage.blob import BlobServiceClient

from devhost.ncrontab import next_occurrence
from tests.fixtures.devhost_app.harness import (MASTER_KEY, EnvironmentSnapshot, app_folder, host,
    invocations, use_storage)
from tests.support.waiting import wait_for

NEVER_IN_A_TEST = "0 0 0 1 1 *"  # midnight, January 1st


@pytest.fixture
def env(azurite):
    with EnvironmentSnapshot():
        use_storage(azurite.connection_string)
        yield azurite.connection_string


def status_blob(connection: str, host_id: str, function: str):
    return BlobServiceClient.from_connection_string(connection).get_blob_client(
        "azure-webjobs-hosts", f"timers/{host_id}/Host.Functions.{function}/status")


def run_by_hand(devhost, function: str) -> None:
    response = httpx.post(f"{devhost.base_url}/admin/functions/{function}", json={"input": ""},
                          headers={"x-functions-key": MASTER_KEY})
    assert response.status_code == 202


def test_a_missed_occurrence_fires_once_as_past_due_and_updates_the_status(env, tmp_path):
    folder = app_folder(tmp_path, TICK_SCHEDULE=NEVER_IN_A_TEST)
    missed = datetime(2026, 1, 1, tzinfo=timezone.utc)
    blob = status_blob(env, "past-due-host", "tick")
    container = BlobServiceClient.from_connection_string(env).get_container_client("azure-webjobs-hosts")
    if not container.exists():
        container.create_container()
    blob.upload_blob(json.dumps({"Last": (missed - timedelta(days=365)).isoformat(), "Next": missed.isoformat(),
                                 "LastUpdated": missed.isoformat()}), overwrite=True)
    with host(folder, host_id="past-due-host") as devhost:
        (fired,) = wait_for(lambda: invocations(folder, "tick"), "the past-due run")
        assert fired["past_due"] is True and fired["status"]["Next"] == missed.isoformat()
        status = wait_for(lambda: (s := json.loads(blob.download_blob().readall()))["Next"] != missed.isoformat()
                          and s, "the status blob to be updated")
        assert datetime.fromisoformat(status["Next"]) == next_occurrence(NEVER_IN_A_TEST,
                                                                         datetime.fromisoformat(status["Last"]))
    with host(folder, host_id="past-due-host") as devhost:  # restarted: nothing is past due any more
        run_by_hand(devhost, "tick")
        runs = wait_for(lambda: invocations(folder, "tick")[1:], "the manual run")
        assert [r["past_due"] for r in invocations(folder, "tick")] == [True, False]
        assert runs[0]["status"] == {}  # a manual run stands for no occurrence of the schedule


def test_run_on_startup_fires_at_each_start(env, tmp_path):
    folder = app_folder(tmp_path)
    with host(folder):
        wait_for(lambda: invocations(folder, "warmup"), "the startup run")
    with host(folder):
        wait_for(lambda: len(invocations(folder, "warmup")) == 2, "the second startup run")
    assert [r["past_due"] for r in invocations(folder, "warmup")] == [False, False]


def test_a_schedule_that_comes_due_fires_and_records_its_status(env, tmp_path):
    folder = app_folder(tmp_path, TICK_SCHEDULE="* * * * * *")  # every second
    with host(folder, host_id="every-second") as devhost:
        wait_for(lambda: len(invocations(folder, "tick")) >= 2, "two scheduled runs")
    assert not any(r["past_due"] for r in invocations(folder, "tick"))
    status = json.loads(status_blob(env, devhost.settings.host_id, "tick").download_blob().readall())
    assert set(status) == {"Last", "Next", "LastUpdated"}
    assert datetime.fromisoformat(status["Next"]) > datetime.fromisoformat(status["Last"])
