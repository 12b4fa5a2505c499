import json
from dataclasses import replace
from datetime import timedelta

import pytest

from retrainer import handlers, policy
from retrainer.events import parse_event
from retrainer.handlers import Action, Deps
from retrainer.ports import ConcurrencyError, PipelineNotPublished, RunStatus, State
from retrainer.settings import Settings
from retrainer.validation import PREFIX_BYTES
from tests.unit.fakes import Clock, FakeBackend, FakeBlobStore, FakeLedger, FakeNotifier, FakeWorkQueues

CONTRACT = {"Pregnancies": {"type": "integer", "min": 0}, "PlasmaGlucose": {"type": "number", "min": 0},
            "Age": {"type": "integer", "min": 0}, "Diabetic": {"type": "integer", "values": [0, 1]}}
GOOD = b"PatientID,Pregnancies,PlasmaGlucose,Age,Diabetic\n1,0,171,21,0\n2,8,92,43,1\n"
SETTINGS = Settings(metric_floor=0.8, min_delta=0.0, dataset_prefix="dataset/", claim_lease_minutes=10,
                    run_deadline_minutes=180, max_file_bytes=10_000_000)


@pytest.fixture(params=["v1", "v2"])
def deps(request):
    """Every handler test runs over both Azure ML SDKs' behaviours (FakeBackend's `sdk`)."""
    clock = Clock()
    return Deps(settings=SETTINGS, ledger=FakeLedger(clock), blobs=FakeBlobStore(clock),
                backend=FakeBackend(sdk=request.param), notifier=FakeNotifier(), queues=FakeWorkQueues(),
                contract=CONTRACT, clock=clock)


def arrive(deps, name="diabetes.csv", data=GOOD):
    deps.blobs.put("incoming", name, data)
    return handlers.data_arrived(deps, "incoming", name)


def run_event(run_id, key, status="Completed", topic=None, event_id="evt-1", run_type=None, app="retrainer"):
    event_type = ("Microsoft.MachineLearningServices.RunCompleted" if status == "Completed" and event_id != "chg"
                  else "Microsoft.MachineLearningServices.RunStatusChanged")
    return parse_event({
        "id": event_id, "topic": SETTINGS.workspace_topic if topic is None else topic,
        "subject": f"experiments/e/runs/{run_id}", "eventType": event_type, "eventTime": "2026-11-29T02:30:00Z",
        "dataVersion": "", "data": {"experimentId": "e", "experimentName": "diabetes-retraining", "runId": run_id,
                                    "runType": run_type, "runTags": {"retrainer.app": app, "retrainer.key": key},
                                    "runProperties": {}, "runStatus": status}})


def submitted(deps, name="diabetes.csv"):
    outcome = arrive(deps, name)
    assert outcome.action == Action.SUBMITTED
    return outcome.key, outcome.detail["run_id"]


# ---------------------------------------------------------------- data arrived

def test_a_good_file_is_submitted_once_with_its_path_and_tags(deps):
    outcome = arrive(deps, "2026/diabetes.csv")

    assert outcome.action == Action.SUBMITTED
    [(parameters, tags)] = deps.backend.submissions
    info = deps.blobs.properties("incoming", "2026/diabetes.csv")
    assert parameters == {"input_data": "2026/diabetes.csv", "input_data_version": policy.file_fingerprint(info)}
    etag = info.etag.strip('"')
    key = f"blob:incoming/2026/diabetes.csv@{etag}"
    assert tags == {"retrainer.key": key, "retrainer.key_sha": policy.key_digest(key), "retrainer.trigger": "blob",
                    "retrainer.app": "retrainer", "retrainer.pipeline_version": deps.backend.ref.version,
                    "retrainer.blob": "2026/diabetes.csv", "retrainer.etag": etag}
    row = deps.ledger.get(outcome.key)
    assert row.state == State.SUBMITTED
    assert row.fields["run_id"] == outcome.detail["run_id"]
    assert row.fields["pipeline_version"] == deps.backend.ref.version
    assert deps.blobs.prefix_reads == [PREFIX_BYTES]


def test_the_same_blob_version_twice_submits_once(deps):
    first = arrive(deps)
    again = handlers.data_arrived(deps, "incoming", "diabetes.csv")

    assert again.action == Action.DUPLICATE and again.key == first.key
    assert len(deps.backend.submissions) == 1


def test_a_new_version_of_the_blob_is_new_work(deps):
    first = arrive(deps)
    second = arrive(deps)   # overwritten: a new ETag

    assert second.action == Action.SUBMITTED and second.key != first.key
    assert len(deps.backend.submissions) == 2


def test_a_bad_file_is_rejected_quarantined_recorded_and_notified_never_submitted(deps):
    outcome = arrive(deps, data=b"Pregnancies,Age\n1,2\n")

    assert outcome.action == Action.REJECTED
    assert outcome.detail["reason_code"] == "missing_columns"
    assert deps.backend.submissions == []
    assert deps.blobs.exists("incoming", "diabetes.csv")                  # the original stays
    assert "lacks required columns" in deps.blobs.quarantined[outcome.detail["quarantine"]]
    row = deps.ledger.get(outcome.key)
    assert row.state == State.REJECTED and row.fields["reason_code"] == "missing_columns"
    assert row.fields["notified"] is True
    [(event_id, event_type, subject, data)] = deps.notifier.published
    assert (event_type, subject) == ("retrainer.data.rejected", outcome.key)
    assert event_id == policy.notification_id(outcome.key, "retrainer.data.rejected")
    assert data["reason"] == row.fields["reason"] and data["state"] == State.REJECTED


def test_a_rejected_file_delivered_again_is_not_rejected_twice(deps):
    arrive(deps, data=b"")
    again = handlers.data_arrived(deps, "incoming", "diabetes.csv")

    assert again.action == Action.DUPLICATE
    assert len(deps.notifier.published) == 1


def test_a_path_trick_name_is_rejected_without_reading_the_blob(deps):
    outcome = arrive(deps, name="data/../../etc.csv")

    assert outcome.action == Action.REJECTED and outcome.detail["reason_code"] == "bad_name"
    assert deps.blobs.prefix_reads == []
    assert deps.notifier.types() == ["retrainer.data.rejected"]


def test_a_file_over_the_limit_is_rejected_without_reading_it(deps):
    deps.settings = Settings(max_file_bytes=10)
    outcome = arrive(deps)

    assert outcome.detail["reason_code"] == "too_large"
    assert deps.blobs.prefix_reads == []


def test_a_blob_gone_before_it_was_handled_is_ignored(deps):
    outcome = handlers.data_arrived(deps, "incoming", "missing.csv")
    assert outcome.action == Action.IGNORED and deps.ledger.recent(10) == []


def test_a_fresh_claim_of_another_worker_is_a_duplicate(deps):
    deps.blobs.put("incoming", "diabetes.csv", GOOD)
    info = deps.blobs.properties("incoming", "diabetes.csv")
    deps.ledger.claim(policy.blob_key("incoming", "diabetes.csv", info.etag), "blob", {})

    outcome = handlers.data_arrived(deps, "incoming", "diabetes.csv")

    assert outcome.action == Action.DUPLICATE
    assert deps.backend.submissions == []


def test_a_stale_claim_without_a_run_is_retaken_and_submitted(deps):
    deps.blobs.put("incoming", "diabetes.csv", GOOD)
    info = deps.blobs.properties("incoming", "diabetes.csv")
    deps.ledger.claim(policy.blob_key("incoming", "diabetes.csv", info.etag), "blob", {})   # holder died
    deps.clock.advance(minutes=11)

    outcome = handlers.data_arrived(deps, "incoming", "diabetes.csv")

    assert outcome.action == Action.SUBMITTED
    assert len(deps.backend.submissions) == 1


def test_a_submit_retried_after_a_crash_finds_the_run_instead_of_submitting_again(deps):
    deps.backend.fail_submit_after_run = True
    with pytest.raises(ConnectionError):
        arrive(deps)                       # the run exists, the ledger never heard of it
    deps.backend.fail_submit_after_run = False

    retried = handlers.data_arrived(deps, "incoming", "diabetes.csv")    # the host retries at once

    assert retried.action == Action.SUBMITTED and retried.detail["recovered"] is True
    assert len(deps.backend.submissions) == 1
    assert deps.ledger.get(retried.key).fields["run_id"] == retried.detail["run_id"]


def test_a_failed_invocation_gives_its_claim_back_so_its_retry_works_at_once(deps, monkeypatch):
    healthy = deps.backend.ensure_published

    def unreachable(name):
        raise ConnectionError("the workspace did not answer")

    monkeypatch.setattr(deps.backend, "ensure_published", unreachable)
    with pytest.raises(ConnectionError):
        arrive(deps)
    monkeypatch.setattr(deps.backend, "ensure_published", healthy)

    retried = handlers.data_arrived(deps, "incoming", "diabetes.csv")

    assert retried.action == Action.SUBMITTED
    assert len(deps.backend.submissions) == 1
    assert "released_at" not in deps.ledger.get(retried.key).fields
    assert handlers.data_arrived(deps, "incoming", "diabetes.csv").action == Action.DUPLICATE


def test_a_pipeline_the_deployment_does_not_expect_is_notified_once_and_nothing_is_submitted(deps, monkeypatch):
    def mismatch(name):
        raise PipelineNotPublished("pipeline endpoint 'diabetes-training' serves diabetes_training version a, "
                                   "this deployment expects b")

    monkeypatch.setattr(deps.backend, "ensure_published", mismatch)
    for name in ("diabetes.csv", "diabetes.csv", "more.csv"):      # a retry, then another file
        with pytest.raises(PipelineNotPublished):
            arrive(deps, name)

    assert deps.backend.submissions == []
    alerts = [event for event in deps.notifier.published if event[1] == handlers.PIPELINE_UNAVAILABLE]
    assert len({event_id for event_id, *_ in alerts}) == 1          # one id: receivers drop the repeats
    assert alerts[0][3]["error"].endswith("this deployment expects b")


# ---------------------------------------------------------------- run finished

def test_a_better_model_is_registered_with_lineage_and_notified(deps):
    key, run_id = submitted(deps)
    deps.backend.finish(run_id, metrics={"AUC": 0.91, "Accuracy": 0.89})

    outcome = handlers.run_finished(deps, run_event(run_id, key))

    assert outcome.action == Action.REGISTERED
    [model] = deps.backend.models["diabetes_model"]
    assert model.tags["retrainer.run_id"] == run_id
    assert model.tags["retrainer.data"] == "incoming/diabetes.csv"
    assert model.tags["retrainer.pipeline_version"] == deps.backend.ref.version
    assert model.properties == {"AUC": "0.91", "Accuracy": "0.89"}
    row = deps.ledger.get(key)
    assert row.state == State.REGISTERED and row.fields["model_version"] == 1
    assert row.fields["reason"] == "AUC 0.9100 >= floor 0.8000 (no current model)"
    [(_, event_type, subject, data)] = deps.notifier.published
    assert (event_type, subject) == ("retrainer.model.registered", key)
    assert data["model_version"] == 1 and data["run_id"] == run_id


def test_a_model_worse_than_the_champion_is_rejected_with_the_reason(deps):
    deps.backend.add_champion("diabetes_model", "AUC", 0.93)
    key, run_id = submitted(deps)
    deps.backend.finish(run_id, metrics={"AUC": 0.91})

    outcome = handlers.run_finished(deps, run_event(run_id, key))

    assert outcome.action == Action.MODEL_REJECTED
    assert len(deps.backend.models["diabetes_model"]) == 1
    assert deps.ledger.get(key).state == State.MODEL_REJECTED
    [(_, event_type, _, data)] = deps.notifier.published
    assert event_type == "retrainer.model.rejected"
    assert data["reason"] == "AUC 0.9100 < champion 0.9300 + 0.0000"


def test_a_model_better_than_the_champion_becomes_the_next_version(deps):
    deps.backend.add_champion("diabetes_model", "AUC", 0.88)
    key, run_id = submitted(deps)
    deps.backend.finish(run_id, metrics={"AUC": 0.91})

    outcome = handlers.run_finished(deps, run_event(run_id, key))

    assert outcome.action == Action.REGISTERED and outcome.detail["model_version"] == 2
    assert "champion 0.8800" in deps.ledger.get(key).fields["reason"]


def test_with_no_current_model_a_model_below_the_floor_is_rejected(deps):
    key, run_id = submitted(deps)
    deps.backend.finish(run_id, metrics={"AUC": 0.7})

    assert handlers.run_finished(deps, run_event(run_id, key)).action == Action.MODEL_REJECTED
    assert "diabetes_model" not in deps.backend.models


def test_a_run_without_the_primary_metric_is_rejected(deps):
    key, run_id = submitted(deps)
    deps.backend.finish(run_id, metrics={"Accuracy": 0.9})

    outcome = handlers.run_finished(deps, run_event(run_id, key))

    assert outcome.action == Action.MODEL_REJECTED
    assert "no AUC metric" in outcome.detail["reason"]


def test_the_same_event_twice_registers_one_version_and_notifies_once(deps):
    key, run_id = submitted(deps)
    deps.backend.finish(run_id, metrics={"AUC": 0.91})

    handlers.run_finished(deps, run_event(run_id, key))
    again = handlers.run_finished(deps, run_event(run_id, key))

    assert again.action == Action.DUPLICATE
    assert len(deps.backend.models["diabetes_model"]) == 1
    assert len(deps.notifier.published) == 1


def test_a_run_already_registered_before_a_crash_is_not_registered_again(deps):
    deps.settings = Settings(min_delta=0.05)   # compared with itself, the gate would say no
    key, run_id = submitted(deps)
    info = deps.backend.finish(run_id, metrics={"AUC": 0.91})
    deps.backend.register_model(info, "diabetes_model", "outputs/diabetes_model.pkl", {}, {"AUC": "0.91"})

    outcome = handlers.run_finished(deps, run_event(run_id, key))

    assert outcome.action == Action.REGISTERED and outcome.detail["model_version"] == 1
    assert len(deps.backend.models["diabetes_model"]) == 1


def test_a_completed_event_before_the_run_id_was_recorded_still_finishes_the_row(deps):
    deps.backend.fail_submit_after_run = True
    with pytest.raises(ConnectionError):
        arrive(deps)
    [(_, tags)] = deps.backend.submissions
    [run_id] = deps.backend.runs
    key = tags["retrainer.key"]
    assert deps.ledger.get(key).state == State.CLAIMED
    deps.backend.finish(run_id, metrics={"AUC": 0.9})

    outcome = handlers.run_finished(deps, run_event(run_id, key))

    assert outcome.action == Action.REGISTERED
    assert deps.ledger.get(key).fields["run_id"] == run_id


def test_events_out_of_order_change_nothing_after_the_end(deps):
    key, run_id = submitted(deps)
    deps.backend.finish(run_id, metrics={"AUC": 0.9})
    handlers.run_finished(deps, run_event(run_id, key))

    late_running = handlers.run_finished(deps, run_event(run_id, key, status="Running", event_id="chg"))
    late_completed = handlers.run_finished(deps, run_event(run_id, key, status="Completed", event_id="chg"))

    assert late_running.action == Action.IGNORED
    assert late_completed.action == Action.DUPLICATE
    assert deps.ledger.get(key).state == State.REGISTERED
    assert len(deps.notifier.published) == 1


def test_a_failed_run_is_reported_with_its_failed_step_and_log(deps):
    key, run_id = submitted(deps)
    deps.backend.finish(run_id, status=RunStatus.FAILED, failed_step="prep")

    outcome = handlers.run_finished(deps, run_event(run_id, key, status="Failed", event_id="chg"))

    assert outcome.action == Action.FAILED
    row = deps.ledger.get(key)
    assert row.state == State.FAILED
    assert (row.fields["failed_step"], row.fields["log"]) == ("prep", f"logs/{run_id}/train/std_log.txt")
    [(_, event_type, _, data)] = deps.notifier.published
    assert event_type == "retrainer.run.failed" and data["failed_step"] == "prep"
    assert "diabetes_model" not in deps.backend.models


@pytest.mark.parametrize("event", [
    run_event("run-1", "k", topic="/subscriptions/x/resourceGroups/y/providers/"
                                  "Microsoft.MachineLearningServices/workspaces/other"),
    run_event("run-1", "k", app="someone-else"),
    run_event("run-1", "k", run_type="azureml.StepRun"),
    parse_event({"id": "v", "topic": "t", "subject": "s", "eventType": "Microsoft.Storage.BlobDeleted",
                 "eventTime": "2026-11-29T02:30:00Z", "data": {}, "dataVersion": ""}),
], ids=["foreign topic", "untagged", "step run", "unknown type"])
def test_events_that_are_not_ours_are_ignored_without_touching_anything(deps, event):
    key, run_id = submitted(deps)
    deps.backend.finish(run_id, metrics={"AUC": 0.9})

    outcome = handlers.run_finished(deps, event)

    assert outcome.action == Action.IGNORED
    assert deps.ledger.get(key).state == State.SUBMITTED
    assert deps.notifier.published == []


def test_an_event_of_another_run_carrying_the_key_is_ignored(deps):
    key, run_id = submitted(deps)
    deps.backend.runs["other"] = deps.backend.runs[run_id]

    assert handlers.run_finished(deps, run_event("other", key)).action == Action.IGNORED
    assert deps.ledger.get(key).state == State.SUBMITTED


def finished_but_unsent(deps):
    """A registered run whose notification failed to go out."""
    key, run_id = submitted(deps)
    deps.backend.finish(run_id, metrics={"AUC": 0.9})
    deps.notifier.fail = True
    with pytest.raises(ConnectionError):
        handlers.run_finished(deps, run_event(run_id, key))
    deps.notifier.fail = False
    return key, run_id


def test_a_notification_lost_in_a_crash_is_sent_on_redelivery_with_the_same_id(deps):
    key, run_id = finished_but_unsent(deps)

    outcome = handlers.run_finished(deps, run_event(run_id, key))

    assert outcome.action == Action.DUPLICATE
    [(event_id, event_type, _, _)] = deps.notifier.published
    assert event_id == policy.notification_id(key, event_type)
    assert deps.ledger.get(key).fields["notified"] is True
    assert len(deps.backend.models["diabetes_model"]) == 1


class DuplicateMidSend(FakeNotifier):
    """A duplicate of the run event is handled while the first invocation is sending its notification."""

    def __init__(self, deps, event):
        super().__init__()
        self.deps, self.event, self.duplicates = deps, event, []

    def publish(self, event_id, event_type, subject, data):
        if not self.duplicates:
            self.duplicates.append(handlers.run_finished(self.deps, self.event))
        super().publish(event_id, event_type, subject, data)


def test_a_duplicate_arriving_mid_send_does_not_send_the_notification_again(deps):
    key, run_id = submitted(deps)
    deps.backend.finish(run_id, metrics={"AUC": 0.9})
    deps.notifier = DuplicateMidSend(deps, run_event(run_id, key))

    outcome = handlers.run_finished(deps, run_event(run_id, key))

    assert outcome.action == Action.REGISTERED
    assert [d.action for d in deps.notifier.duplicates] == [Action.DUPLICATE]
    assert len(deps.notifier.published) == 1
    assert deps.ledger.get(key).fields["notified"] is True


def test_a_notification_whose_sender_died_is_sent_by_reconcile_after_the_lease(deps):
    key, run_id = finished_but_unsent(deps)
    deps.ledger.touch(key, sending_since=deps.clock())   # killed mid-send: nothing gave the send lease back
    sender = deps.notifier

    assert handlers.run_finished(deps, run_event(run_id, key)).action == Action.DUPLICATE
    assert list(handlers.reconcile(deps)) == [] and sender.published == [], "the lease is still held"
    deps.clock.advance(minutes=11)
    swept = list(handlers.reconcile(deps))

    assert [o.key for o in swept] == [key]
    [(event_id, event_type, _, _)] = sender.published
    assert (event_id, event_type) == (policy.notification_id(key, event_type), handlers.MODEL_REGISTERED)
    assert deps.ledger.get(key).fields["notified"] is True
    assert list(handlers.reconcile(deps)) == []


def test_a_run_being_finished_by_another_worker_is_left_to_it(deps):
    key, run_id = submitted(deps)
    deps.backend.finish(run_id, metrics={"AUC": 0.9})
    deps.ledger.touch(key, finishing_since=deps.clock())

    outcome = handlers.run_finished(deps, run_event(run_id, key))

    assert outcome.action == Action.DUPLICATE
    assert "diabetes_model" not in deps.backend.models


def test_a_finish_that_fails_gives_the_row_back_for_the_redelivery(deps, monkeypatch):
    key, run_id = submitted(deps)
    deps.backend.finish(run_id, metrics={"AUC": 0.9})
    healthy = deps.backend.get_run

    def unreachable(run_id):
        raise ConnectionError("the workspace did not answer")

    monkeypatch.setattr(deps.backend, "get_run", unreachable)
    with pytest.raises(ConnectionError):
        handlers.run_finished(deps, run_event(run_id, key))
    monkeypatch.setattr(deps.backend, "get_run", healthy)

    outcome = handlers.run_finished(deps, run_event(run_id, key))   # Event Grid redelivers at once

    assert outcome.action == Action.REGISTERED
    assert len(deps.backend.models["diabetes_model"]) == 1


class InterferingLedger(FakeLedger):
    """Another worker writes the row just before our next update: the handler must reread and decide again."""

    def __init__(self, clock, times):
        super().__init__(clock)
        self.times = times

    def update(self, entry, state, fields):
        if self.times and entry.state == State.SUBMITTED:
            self.times -= 1
            current = self.get(entry.key)
            super().update(current, current.state, {"noise": self.times})
        return super().update(entry, state, fields)


def test_a_concurrent_write_is_reread_and_the_decision_made_again(deps):
    key, run_id = submitted(deps)
    deps.backend.finish(run_id, metrics={"AUC": 0.9})
    ledger = InterferingLedger(deps.clock, times=2)
    ledger._rows, ledger._order = deps.ledger._rows, deps.ledger._order
    deps.ledger = ledger

    outcome = handlers.run_finished(deps, run_event(run_id, key))

    assert outcome.action == Action.REGISTERED
    assert deps.ledger.get(key).state == State.REGISTERED
    assert len(deps.backend.models["diabetes_model"]) == 1


def test_a_row_that_keeps_changing_gives_the_event_back_for_retry(deps):
    key, run_id = submitted(deps)
    deps.backend.finish(run_id, metrics={"AUC": 0.9})
    ledger = InterferingLedger(deps.clock, times=100)
    ledger._rows, ledger._order = deps.ledger._rows, deps.ledger._order
    deps.ledger = ledger

    with pytest.raises(ConcurrencyError):
        handlers.run_finished(deps, run_event(run_id, key))
    assert "diabetes_model" not in deps.backend.models


# ---------------------------------------------------------------- reconcile

def test_reconcile_reports_each_poisoned_message_once(deps):
    from retrainer.ports import PoisonedMessage

    body = '{"id": "e1", "container": "incoming", "name": "a.csv", "etag": "0x1"}'
    deps.queues.poison.append(PoisonedMessage("retrainer-blob-events-poison", "m-1", deps.clock(), body))

    first = list(handlers.reconcile(deps))
    deps.clock.advance(minutes=15)
    again = list(handlers.reconcile(deps))

    assert [o.action for o in first] == [Action.FAILED] and [o.action for o in again] == [Action.DUPLICATE]
    [(_, kind, subject, data)] = deps.notifier.published
    assert (kind, subject) == (handlers.WORK_POISONED, "poison:retrainer-blob-events-poison/m-1")
    assert data["body"] == body and "retrainer-blob-events" in data["reason"]


def test_a_poisoned_message_whose_reporter_died_is_reported_after_the_lease(deps):
    from retrainer.ports import PoisonedMessage

    message = PoisonedMessage("retrainer-run-events-poison", "m-2", deps.clock(), "{}")
    deps.queues.poison.append(message)
    deps.ledger.claim(policy.poison_key(message.queue, message.id), "poison", {})     # claimed, then the host died

    during = list(handlers.reconcile(deps))
    deps.clock.advance(minutes=SETTINGS.claim_lease_minutes)
    after = list(handlers.reconcile(deps))

    assert [o.action for o in during] == [Action.DUPLICATE] and [o.action for o in after] == [Action.FAILED]
    assert deps.notifier.types() == [handlers.WORK_POISONED]


def test_reconcile_finishes_a_cancelled_run_past_its_deadline(deps):
    key, run_id = submitted(deps)
    deps.backend.finish(run_id, status=RunStatus.CANCELED)
    assert list(handlers.reconcile(deps)) == []           # not past the deadline yet
    deps.clock.advance(minutes=181)

    [outcome] = handlers.reconcile(deps)

    assert outcome.action == Action.FAILED and outcome.key == key
    assert deps.ledger.get(key).state == State.FAILED
    assert deps.notifier.types() == ["retrainer.run.failed"]
    assert list(handlers.reconcile(deps)) == []


def test_reconcile_registers_a_completed_run_whose_event_never_came(deps):
    key, run_id = submitted(deps)
    deps.backend.finish(run_id, metrics={"AUC": 0.9})
    deps.clock.advance(minutes=181)

    [outcome] = handlers.reconcile(deps)

    assert outcome.action == Action.REGISTERED
    assert handlers.run_finished(deps, run_event(run_id, key)).action == Action.DUPLICATE


def test_reconcile_leaves_a_running_run_alone(deps):
    key, _ = submitted(deps)
    deps.clock.advance(minutes=181)

    [outcome] = handlers.reconcile(deps)

    assert outcome.action == Action.RUNNING
    assert deps.ledger.get(key).state == State.SUBMITTED


def test_reconcile_records_the_run_of_a_stale_claim(deps):
    deps.backend.fail_submit_after_run = True
    with pytest.raises(ConnectionError):
        arrive(deps)
    deps.backend.fail_submit_after_run = False
    deps.clock.advance(minutes=11)
    [run_id] = deps.backend.runs

    [outcome] = handlers.reconcile(deps)

    assert outcome.action == Action.SUBMITTED and outcome.detail["run_id"] == run_id
    assert len(deps.backend.submissions) == 1


def test_reconcile_redrives_a_stale_claim_without_a_run(deps):
    deps.blobs.put("incoming", "diabetes.csv", GOOD)
    info = deps.blobs.properties("incoming", "diabetes.csv")
    key = policy.blob_key("incoming", "diabetes.csv", info.etag)
    deps.ledger.claim(key, "blob", {"container": "incoming", "blob": "diabetes.csv", "trigger": "blob"})
    deps.clock.advance(minutes=11)

    [outcome] = handlers.reconcile(deps)

    assert outcome.action == Action.SUBMITTED and outcome.key == key
    assert len(deps.backend.submissions) == 1


def test_reconcile_closes_a_stale_claim_whose_blob_is_gone(deps):
    deps.ledger.claim("blob:incoming/gone.csv@0x1", "blob", {"container": "incoming", "blob": "gone.csv"})
    deps.clock.advance(minutes=11)

    [outcome] = handlers.reconcile(deps)

    assert outcome.action == Action.FAILED
    assert deps.ledger.get("blob:incoming/gone.csv@0x1").state == State.FAILED
    assert deps.backend.submissions == []


# ---------------------------------------------------------------- retrain due (timer)

def tick(deps, hours=0, past_due=False):
    return handlers.retrain_due(deps, "scheduled_retrain", deps.clock.now.replace(minute=0) + timedelta(hours=hours),
                                past_due)


def test_a_tick_with_no_data_records_no_new_data(deps):
    outcome = tick(deps)
    assert outcome.action == Action.NO_NEW_DATA
    assert deps.ledger.get(outcome.key).state == State.NO_NEW_DATA
    assert deps.backend.submissions == []


def test_a_tick_retrains_on_the_dataset_folder_only_when_it_has_newer_data(deps):
    deps.blobs.put("incoming", "dataset/a.csv", GOOD)
    first = tick(deps)
    assert first.action == Action.SUBMITTED
    [(parameters, tags)] = deps.backend.submissions
    assert parameters["input_data"] == "dataset" and tags["retrainer.trigger"] == "timer"
    deps.backend.finish(first.detail["run_id"], metrics={"AUC": 0.9})
    handlers.run_finished(deps, run_event(first.detail["run_id"], first.key))

    deps.clock.advance(days=1)
    nothing_new = tick(deps)
    deps.blobs.put("incoming", "dataset/b.csv", GOOD)
    deps.blobs.put("incoming", "elsewhere.csv", GOOD)     # outside the dataset folder: does not count
    deps.clock.advance(days=1)
    new_data = tick(deps)

    assert nothing_new.action == Action.NO_NEW_DATA
    assert new_data.action == Action.SUBMITTED
    assert len(deps.backend.submissions) == 2


def test_azure_ml_outputs_in_the_dataset_folder_are_not_new_data(deps):
    """Azure ML writes PipelineData under azureml/ on its datastore: that must never look like new data."""
    deps.settings = replace(deps.settings, dataset_prefix="")
    deps.blobs.put("incoming", "a.csv", GOOD)
    first = tick(deps)
    deps.backend.finish(first.detail["run_id"], metrics={"AUC": 0.9})
    handlers.run_finished(deps, run_event(first.detail["run_id"], first.key))

    deps.clock.advance(days=1)
    deps.blobs.put("incoming", "azureml/0123/prepped_data/data.csv", GOOD)

    assert tick(deps).action == Action.NO_NEW_DATA


def test_every_change_of_the_data_changes_its_fingerprint_and_nothing_else_does(deps):
    """input_data_version decides Azure ML's step reuse: new data must rerun the steps, the same data need not."""
    first = deps.blobs.put("incoming", "d/a.csv", GOOD)
    overwritten = deps.blobs.put("incoming", "d/a.csv", GOOD + b"6,148,72,35,0,33.6,0.627,50,1\n")
    same_bytes_again = deps.blobs.put("incoming", "d/a.csv", GOOD)
    block_list = deps.blobs.put("incoming", "d/a.csv", GOOD, content_md5=False)   # no MD5: the ETag decides
    block_list_again = deps.blobs.put("incoming", "d/a.csv", GOOD, content_md5=False)
    b = deps.blobs.put("incoming", "d/b.csv", GOOD)

    assert policy.file_fingerprint(overwritten) != policy.file_fingerprint(first)
    assert policy.file_fingerprint(same_bytes_again) == policy.file_fingerprint(first)
    assert policy.file_fingerprint(block_list_again) != policy.file_fingerprint(block_list)
    assert policy.folder_fingerprint([first, b]) != policy.folder_fingerprint([first])
    assert policy.folder_fingerprint([first, b]) == policy.folder_fingerprint([b, same_bytes_again])


def test_a_failed_training_does_not_move_the_watermark(deps):
    deps.blobs.put("incoming", "dataset/a.csv", GOOD)
    first = tick(deps)
    deps.backend.finish(first.detail["run_id"], status=RunStatus.FAILED)
    handlers.run_finished(deps, run_event(first.detail["run_id"], first.key, status="Failed", event_id="chg"))
    deps.clock.advance(days=1)

    assert tick(deps).action == Action.SUBMITTED


def test_a_past_due_tick_delivered_twice_counts_once(deps):
    deps.blobs.put("incoming", "dataset/a.csv", GOOD)
    first = tick(deps, past_due=True)
    again = tick(deps, past_due=True)

    assert (first.action, again.action) == (Action.SUBMITTED, Action.DUPLICATE)
    assert len(deps.backend.submissions) == 1


# ---------------------------------------------------------------- retrain requested (HTTP)

def test_a_requested_retrain_of_a_file_is_validated_and_submitted(deps):
    deps.blobs.put("incoming", "lab/diabetes.csv", GOOD)

    outcome = handlers.retrain_requested(deps, "incoming/lab/diabetes.csv")

    assert outcome.action == Action.SUBMITTED and outcome.key.startswith("manual:")
    [(parameters, tags)] = deps.backend.submissions
    assert parameters["input_data"] == "lab/diabetes.csv" and tags["retrainer.trigger"] == "manual"


def test_a_requested_retrain_of_a_folder_is_submitted(deps):
    a = deps.blobs.put("incoming", "lab/a.csv", GOOD)

    outcome = handlers.retrain_requested(deps, "incoming/lab/")

    assert outcome.action == Action.SUBMITTED
    assert deps.backend.submissions[0][0] == {"input_data": "lab",
                                              "input_data_version": policy.folder_fingerprint([a])}


def test_a_requested_retrain_of_a_bad_file_is_rejected_like_a_blob(deps):
    deps.blobs.put("incoming", "lab/notes.csv", b"hello")

    outcome = handlers.retrain_requested(deps, "incoming/lab/notes.csv")

    assert outcome.action == Action.REJECTED
    assert deps.notifier.types() == ["retrainer.data.rejected"]


@pytest.mark.parametrize("path, what", [("other/diabetes.csv", "not in container 'incoming'"),
                                        ("incoming/", "names no blob or folder"),
                                        ("incoming/../x.csv", "'..' segment"),
                                        ("incoming/nothing-here.csv", "no data at")])
def test_a_requested_retrain_of_a_bad_path_is_refused_with_a_message(deps, path, what):
    outcome = handlers.retrain_requested(deps, path)

    assert outcome.action == Action.REJECTED and what in outcome.detail["message"]
    assert deps.backend.submissions == [] and deps.ledger.recent(10) == []


# ---------------------------------------------------------------- lineage

def test_lineage_and_recent_runs_are_plain_json_data(deps):
    key, run_id = submitted(deps)
    deps.backend.finish(run_id, metrics={"AUC": 0.9})
    handlers.run_finished(deps, run_event(run_id, key))
    second = arrive(deps, "more.csv", data=b"")

    record = handlers.lineage(deps, key)
    recent = handlers.recent_runs(deps, 10)

    assert record["state"] == State.REGISTERED and record["blob"] == "diabetes.csv"
    assert record["run_id"] == run_id and record["model_version"] == 1 and record["notified"] is True
    assert [r["key"] for r in recent] == [second.key, key]
    json.dumps(recent)      # nothing but JSON types
    assert handlers.lineage(deps, "blob:nope") is None


def test_recent_runs_leave_out_the_watermark(deps):
    deps.blobs.put("incoming", "dataset/a.csv", GOOD)
    first = tick(deps)
    deps.backend.finish(first.detail["run_id"], metrics={"AUC": 0.9})
    handlers.run_finished(deps, run_event(first.detail["run_id"], first.key))

    assert [r["kind"] for r in handlers.recent_runs(deps, 1)] == ["timer"]


def test_a_retried_request_with_its_idempotency_key_submits_once(deps):
    deps.blobs.put("incoming", "lab/diabetes.csv", GOOD)

    first = handlers.retrain_requested(deps, "incoming/lab/diabetes.csv", request_id="client-7")
    again = handlers.retrain_requested(deps, "incoming/lab/diabetes.csv", request_id="client-7")
    other = handlers.retrain_requested(deps, "incoming/lab/diabetes.csv")

    assert (first.action, again.action, other.action) == (Action.SUBMITTED, Action.DUPLICATE, Action.SUBMITTED)
    assert first.key == again.key == "manual:client-7"
    assert len(deps.backend.submissions) == 2


def test_overdue_counts_the_rows_past_their_bound(deps):
    finished_but_unsent(deps)                              # final, its notification pending
    arrive(deps, "other.csv")                              # submitted, its run running
    deps.ledger.claim("manual:held", "manual", {})         # claimed, its holder gone
    assert handlers.overdue(deps) == {"claimed": 0, "submitted": 0, "unnotified": 0}, "all within their bound"

    deps.clock.advance(minutes=11)
    assert handlers.overdue(deps) == {"claimed": 1, "submitted": 0, "unnotified": 1}
    deps.clock.advance(minutes=180)
    assert handlers.overdue(deps) == {"claimed": 1, "submitted": 1, "unnotified": 1}
