import hashlib
from datetime import datetime, timedelta, timezone

import pytest

from retrainer import policy
from retrainer.events import parse_event
from retrainer.ports import BlobInfo, LedgerEntry, ModelRef, RunStatus, State
from retrainer.settings import Settings

SETTINGS = Settings(primary_metric="AUC", metric_floor=0.8, min_delta=0.01)
T0 = datetime(2026, 11, 29, 2, 0, tzinfo=timezone.utc)


def test_blob_key_is_the_same_for_quoted_and_bare_etags():
    assert policy.blob_key("incoming", "a/b.csv", '"0x8DC"') == policy.blob_key("incoming", "a/b.csv", "0x8DC")
    assert policy.blob_key("incoming", "a/b.csv", "0x8DC") == "blob:incoming/a/b.csv@0x8DC"
    assert policy.blob_key("incoming", "a/b.csv", "0x8DC") != policy.blob_key("incoming", "a/b.csv", "0x8DD")


def test_timer_key_names_one_instant_whatever_its_timezone():
    paris = timezone(timedelta(hours=1))
    same = T0.astimezone(paris).replace(microsecond=1234)
    assert policy.timer_key("retrain", T0) == policy.timer_key("retrain", same) == "timer:retrain@2026-11-29T02:00:00Z"
    assert policy.timer_key("retrain", T0) != policy.timer_key("retrain", T0 + timedelta(days=1))


def test_notification_id_is_deterministic_per_key_and_type():
    first = policy.notification_id("blob:x@1", "retrainer.model.registered")
    assert first == policy.notification_id("blob:x@1", "retrainer.model.registered")
    assert len(first) == 32 and int(first, 16) >= 0
    assert first != policy.notification_id("blob:x@1", "retrainer.run.failed")
    assert first != policy.notification_id("blob:x@2", "retrainer.model.registered")


def test_key_digest_is_a_plain_tag_value_whatever_the_key_holds():
    digest = policy.key_digest('manual:say "hi" / bye')
    assert len(digest) == 40 and digest.isalnum()
    assert digest != policy.key_digest('manual:say "hi" / bye!')


def test_run_tags_carry_the_contract_tags():
    tags = policy.run_tags("blob:incoming/a.csv@0x1", "blob", "abc123", blob="a.csv", etag='"0x1"')
    assert tags == {"retrainer.key": "blob:incoming/a.csv@0x1",
                    "retrainer.key_sha": hashlib.sha256(b"blob:incoming/a.csv@0x1").hexdigest()[:40],
                    "retrainer.trigger": "blob",
                    "retrainer.app": "retrainer", "retrainer.pipeline_version": "abc123",
                    "retrainer.blob": "a.csv", "retrainer.etag": "0x1"}
    assert "retrainer.blob" not in policy.run_tags("timer:t@x", "timer", "abc123")


def run_event(topic=None, tags=None, status="Completed", run_type=None):
    data = {"experimentId": "e", "experimentName": "x", "runId": "run-1", "runType": run_type,
            "runTags": {"retrainer.app": "retrainer", "retrainer.key": "k"} if tags is None else tags,
            "runProperties": {}, "runStatus": status}
    return parse_event({"id": "1", "topic": SETTINGS.workspace_topic if topic is None else topic,
                        "subject": "s", "eventType": "Microsoft.MachineLearningServices.RunStatusChanged",
                        "eventTime": "2026-11-29T02:00:00Z", "data": data, "dataVersion": ""})


def test_routing_acts_on_this_apps_finished_runs_in_the_workspace():
    assert policy.ignore_run_event(run_event(), SETTINGS) is None
    assert policy.ignore_run_event(run_event(run_type="azureml.PipelineRun"), SETTINGS) is None   # v1 and v2
    assert policy.ignore_run_event(run_event(topic=SETTINGS.workspace_topic.upper()), SETTINGS) is None
    assert policy.ignore_run_event(run_event(status="Failed"), SETTINGS) is None


@pytest.mark.parametrize("event, why", [
    (run_event(topic="/subscriptions/other/resourceGroups/rg/providers/Microsoft.MachineLearningServices"
                     "/workspaces/ws"), "foreign topic"),
    (run_event(tags={}), "not submitted by retrainer"),
    (run_event(tags={"retrainer.app": "someone-else", "retrainer.key": "k"}), "not submitted by retrainer"),
    (run_event(tags={"retrainer.app": "retrainer"}), "not submitted by retrainer"),
    (run_event(status="Running"), "not finished"),
    (run_event(run_type="azureml.StepRun"), "pipeline step"),
    # a step job that carries its pipeline job's tags (should the service copy them down), whatever its runType
    (run_event(tags={"retrainer.app": "retrainer", "retrainer.key": "k", "azureml.pipelinerunid": "retrainer-0f1e"}),
     "pipeline step"),
])
def test_routing_ignores_others_with_a_reason(event, why):
    assert why in policy.ignore_run_event(event, SETTINGS)


def champion(value):
    return ModelRef("diabetes_model", 3, "old", {}, {"AUC": str(value)})


def test_gate_passes_above_floor_and_champion_plus_delta():
    decision = policy.quality_gate({"AUC": 0.91, "Accuracy": 0.8}, champion(0.88), SETTINGS)
    assert decision.passed
    assert (decision.value, decision.champion) == (0.91, 0.88)
    assert decision.reason == "AUC 0.9100 >= floor 0.8000 and >= champion 0.8800 + 0.0100"


def test_gate_rejects_below_champion_plus_delta():
    decision = policy.quality_gate({"AUC": 0.885}, champion(0.88), SETTINGS)
    assert not decision.passed
    assert decision.reason == "AUC 0.8850 < champion 0.8800 + 0.0100"


def test_gate_rejects_below_floor_even_without_champion():
    decision = policy.quality_gate({"AUC": 0.79}, None, SETTINGS)
    assert not decision.passed
    assert decision.reason == "AUC 0.7900 < floor 0.8000"


def test_gate_with_no_current_model_checks_the_floor_only():
    decision = policy.quality_gate({"AUC": 0.81}, None, SETTINGS)
    assert decision.passed
    assert "no current model" in decision.reason


def test_gate_with_a_champion_that_records_no_metric_checks_the_floor_only():
    decision = policy.quality_gate({"AUC": 0.81}, ModelRef("m", 2, properties={}), SETTINGS)
    assert decision.passed
    assert "v2 records no AUC" in decision.reason


def test_gate_rejects_a_missing_metric_and_names_what_was_logged():
    decision = policy.quality_gate({"Accuracy": 0.9}, None, SETTINGS)
    assert not decision.passed
    assert decision.reason == "the run logged no AUC metric (logged: Accuracy)"


@pytest.mark.parametrize("raw, value", [(0.9, 0.9), ("0.9", 0.9), ([0.7, 0.9], 0.9), (1, 1.0)])
def test_gate_reads_numbers_strings_and_series(raw, value):
    assert policy.quality_gate({"AUC": raw}, None, SETTINGS).value == value


@pytest.mark.parametrize("raw", ["high", float("nan"), [], True, None])
def test_gate_rejects_a_metric_that_is_not_a_number(raw):
    decision = policy.quality_gate({"AUC": raw}, None, SETTINGS)
    assert not decision.passed
    assert "not a number" in decision.reason


def test_gate_uses_the_configured_metric():
    settings = Settings(primary_metric="Accuracy", metric_floor=0.5)
    assert policy.quality_gate({"Accuracy": 0.6, "AUC": 0.1}, None, settings).passed


def entry(state, updated):
    return LedgerEntry("k", "blob", state, updated, updated)


def test_a_claim_is_stale_only_after_its_lease():
    assert not policy.claim_is_stale(entry(State.CLAIMED, T0), T0 + timedelta(minutes=9), 10)
    assert policy.claim_is_stale(entry(State.CLAIMED, T0), T0 + timedelta(minutes=10), 10)
    assert not policy.claim_is_stale(entry(State.SUBMITTED, T0), T0 + timedelta(days=1), 10)


def test_new_data_means_a_non_empty_blob_newer_than_the_watermark():
    blobs = [BlobInfo("c", "a.csv", 10, "1", T0), BlobInfo("c", "b.csv", 0, "2", T0 + timedelta(hours=1))]
    newest = policy.newest_data(blobs)
    assert newest == T0      # the zero-byte blob does not count
    assert policy.has_new_data(newest, None)
    assert policy.has_new_data(newest, T0 - timedelta(seconds=1))
    assert not policy.has_new_data(newest, T0)
    assert not policy.has_new_data(policy.newest_data([]), None)
    assert RunStatus.COMPLETED in RunStatus.TERMINAL
