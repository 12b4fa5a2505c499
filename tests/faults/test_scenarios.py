"""Scenarios a user relies on, on the real stack: every file final, one run per key, one model version per
run, every final row notified, no notification id sent twice without a fault, nothing left non-final.

Sized for the default test run (a few files each); bench/faults.py runs the issue's sizes."""
from __future__ import annotations

import os
import random
import signal
import uuid

import pytest

from retrainer import handlers, policy
from retrainer.retry import Retry
from tests.support import local_stack, scenarios
from tests.support.fault_proxy import proxied_connection_string, random_faults
from tests.support.recorder import Recorder
from tests.support.waiting import wait_for

FAST_RETRY = Retry(attempts=6, base=0.05, cap=0.5)   # the app's policy, with short pauses
SETTLE = 120.0      # seconds before a scenario that never settles is reported (never a performance bound)


class Stack:
    def __init__(self, tmp_path, monkeypatch, azurite) -> None:
        self.azurite = azurite
        self.run_events, self.sink = Recorder(), Recorder()
        self.env: dict[str, str] = {"FAULTS_SINK_URL": self.sink.url, "RETRAINER_RUN_DEADLINE_MINUTES": "0"}
        self.settings = local_stack.configure(self.env, tmp_path / "state", azurite.connection_string,
                                              self.run_events.url)
        for name, value in self.env.items():     # the run workers read their settings from the environment
            monkeypatch.setenv(name, value)
        self.rng = random.Random(8)

    def host(self, **connections):
        return local_stack.deps(self.settings, sink=self.sink.url, retry=FAST_RETRY, **connections)

    def files(self, count: int) -> list[str]:
        prefix = uuid.uuid4().hex[:8]
        return local_stack.upload(self.azurite.connection_string, [f"{prefix}-{i}.csv" for i in range(count)])

    def close(self) -> None:
        for pid in local_stack.run_workers():
            os.kill(pid, signal.SIGKILL)
        self.run_events.close()
        self.sink.close()


@pytest.fixture
def stack(tmp_path, monkeypatch, azurite):
    stack = Stack(tmp_path, monkeypatch, azurite)
    yield stack
    stack.close()


def names_of(keys):
    return [key.split("/", 1)[1].rsplit("@", 1)[0] for key in keys]


def test_duplicate_and_reordered_deliveries_on_two_hosts_have_one_effect_each(stack):
    keys = stack.files(6)
    hosts = [stack.host(), stack.host()]

    poisoned = scenarios.drive(hosts, scenarios.blob_deliveries(names_of(keys), (2, 3), stack.rng), 4, stack.rng)
    scenarios.wait_for_runs(hosts[0], keys, stack.run_events, SETTLE)
    poisoned += scenarios.drive(hosts, scenarios.run_finished_deliveries(stack.run_events, 2, stack.rng), 4,
                                stack.rng)
    scenarios.settle(hosts[0], keys, stack.run_events, SETTLE)
    report = scenarios.audit(hosts[0], keys, stack.sink)

    assert not poisoned
    assert report.final == len(keys) and not report.unnotified, report.line()
    assert not report.runs_doubled and not report.versions_doubled, report.line()
    assert not report.sent_twice, report.line()


def test_storage_failing_30_percent_with_half_the_responses_lost(stack, table_proxy, blob_proxy, azurite):
    keys = stack.files(6)
    proxied = proxied_connection_string(azurite.connection_string, table=table_proxy, blob=blob_proxy)
    table_proxy.policy = random_faults(0.3, seed=1, lose_share=0.5)
    blob_proxy.policy = random_faults(0.3, seed=2, lose_share=0.5)
    hosts = [stack.host(ledger_connection=proxied, blob_connection=proxied) for _ in range(2)]

    scenarios.drive(hosts, scenarios.blob_deliveries(names_of(keys), (1, 2), stack.rng), 4, stack.rng)
    scenarios.wait_for_runs(stack.host(), keys, stack.run_events, SETTLE)
    scenarios.drive(hosts, scenarios.run_finished_deliveries(stack.run_events, 2, stack.rng), 4, stack.rng)
    scenarios.settle(hosts[0], keys, stack.run_events, SETTLE)
    report = scenarios.audit(stack.host(), keys, stack.sink)

    assert table_proxy.faults["lost_response"] > 0 and table_proxy.faults["refused"] > 0
    assert report.final == len(keys) and not report.unnotified and not report.not_final, report.line()
    assert not report.runs_doubled and not report.versions_doubled, report.line()


# (the delivery the killed host handles, where it dies, whether the notification's outcome is unknown)
KILLS = {
    "after the claim": ("blob", "ledger.claim:1:after", False),
    "after the submit, before recording the run": ("blob", "backend.submit:1:after", False),
    "after the final write, before the send": ("event", "ledger.update:2:after", False),
    "after the send, before marking it sent": ("event", "notifier.publish:1:after", True),
}


def test_hosts_killed_at_chosen_points_leave_nothing_stuck(stack):
    keys = dict(zip(KILLS, stack.files(len(KILLS))))
    host = stack.host()
    for case, key in keys.items():
        phase, kill_at, _ = KILLS[case]
        [name] = names_of([key])
        if phase == "blob":
            assert scenarios.delivered(scenarios.start_host(stack.env, [{"blob": name}], kill_at)) == 0, case
        scenarios.deliver_one(host, {"blob": name})         # the queue delivers the message (again)
    for case, key in keys.items():
        phase, kill_at, _ = KILLS[case]
        if phase == "event":
            run_id = host.ledger.get(key).fields["run_id"]
            event = wait_for(lambda: next((e for e in scenarios.posted_run_events(stack.run_events)
                                           if e["data"]["runId"] == run_id), None), f"the run event ({case})")
            assert scenarios.delivered(scenarios.start_host(stack.env, [{"event": event}], kill_at)) == 0, case
    scenarios.settle(host, list(keys.values()), stack.run_events, SETTLE)
    report = scenarios.audit(host, list(keys.values()), stack.sink)

    assert report.final == len(KILLS) and not report.unnotified, (report.line(), report.states)
    assert not report.runs_doubled, report.line()
    sent = local_stack.Sent.of(stack.sink).ids
    for case, key in keys.items():
        expected = 2 if KILLS[case][2] else 1      # resent (same id) only when the send's outcome is unknown
        assert sent.count(policy.notification_id(key, handlers.MODEL_REJECTED)) == expected, case
    assert len(sent) == len(KILLS) + 1, "no other notification"


def test_a_run_worker_killed_while_its_host_lives_is_failed_and_reported(stack):
    keys = stack.files(1)
    host = stack.host()
    scenarios.deliver_one(host, {"blob": names_of(keys)[0]})
    [worker] = wait_for(local_stack.run_workers, "the run worker")
    wait_for(lambda: list((stack.settings.state_dir / "queue" / "taken").glob("*.json")), "the worker took the run")

    os.kill(worker, signal.SIGKILL)
    scenarios.settle(host, keys, stack.run_events, SETTLE)
    report = scenarios.audit(host, keys, stack.sink)

    assert report.states == {"failed": 1} and not report.unnotified, report.states
    assert "worker is gone" in host.ledger.get(keys[0]).fields["error"]
    assert worker not in local_stack.zombies()
