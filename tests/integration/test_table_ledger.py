"""The Table Storage ledger against Azurite: claims, optimistic concurrency, awkward keys, queries."""
from __future__ import annotations

import threading
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from azure.core.exceptions import ServiceResponseError

from retrainer.adapters.table_ledger import TableLedger
from retrainer.ports import ConcurrencyError, State
from retrainer.retry import Retry


@pytest.fixture
def table_name() -> str:
    return "ledger" + uuid.uuid4().hex[:12]


@pytest.fixture
def ledger(storage_connection, table_name) -> TableLedger:
    return TableLedger(storage_connection, table_name)


def test_threads_claiming_one_key_exactly_one_wins(storage_connection, table_name):
    key = "blob:incoming/diabetes.csv@0x8DC0000000000001"
    contenders = 4
    start = threading.Barrier(contenders)
    claims = [None] * contenders

    def contend(i: int) -> None:
        ledger = TableLedger(storage_connection, table_name)  # one client each, like two hosts
        ledger.get(key)  # creates the table before the race, so all race on the insert itself
        start.wait()
        claims[i] = ledger.claim(key, "blob", {"claimer": i})

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(contenders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    winners = [c for c in claims if c.won]
    assert len(winners) == 1
    winner = winners[0].entry.fields["claimer"]
    for claim in claims:  # the loser sees the winner's row
        assert claim.entry.key == key
        assert claim.entry.state == State.CLAIMED
        assert claim.entry.fields["claimer"] == winner


def test_a_second_claim_of_a_key_loses_and_returns_the_existing_row(ledger):
    first = ledger.claim("timer:retrain@2026-11-29T02:00:00Z", "timer", {"schedule": "retrain"})
    second = ledger.claim("timer:retrain@2026-11-29T02:00:00Z", "timer", {"schedule": "other"})
    assert first.won and not second.won
    assert second.entry == first.entry


def test_a_claim_whose_answer_was_lost_still_wins_on_retry(storage_connection, table_name):
    quick = Retry(sleep=lambda _: None)
    lost: list[str] = []

    def lose_first_answer(operation, *args, **kwargs):
        def answer_lost_once(*a, **k):
            result = operation(*a, **k)
            if operation.__name__ == "submit_transaction" and not lost:
                lost.append("answer")
                raise ServiceResponseError("connection reset before the response")
            return result
        return quick(answer_lost_once, *args, **kwargs)

    ledger = TableLedger(storage_connection, table_name, retry=lose_first_answer)
    claim = ledger.claim("manual:1234", "manual", {})
    assert lost, "the fault was not injected"
    assert claim.won
    assert not TableLedger(storage_connection, table_name).claim("manual:1234", "manual", {}).won


def test_update_with_a_stale_etag_raises_concurrency_error(ledger):
    claimed = ledger.claim("manual:42", "manual", {"data_path": "incoming/a.csv"}).entry
    submitted = ledger.update(claimed, State.SUBMITTED, {"run_id": "run-1"})
    with pytest.raises(ConcurrencyError):
        ledger.update(claimed, State.FAILED, {"reason": "stale writer"})
    stored = ledger.get("manual:42")
    assert stored == submitted
    assert stored.state == State.SUBMITTED and "reason" not in stored.fields
    # with the fresh etag the update goes through
    assert ledger.update(stored, State.REGISTERED, {"model_version": 3}).state == State.REGISTERED


def test_fields_round_trip_and_update_merges_them(ledger):
    when = datetime(2026, 11, 29, 2, 0, 1, 123456, tzinfo=timezone(timedelta(hours=2)))
    fields = {"blob": "incoming/ünï.csv", "etag": "0x8DC1", "size": 5, "rows": 2 ** 40, "auc": 0.875,
              "valid": True, "seen": when, "notified": ["retrainer.data.rejected"],
              "metrics": {"AUC": 0.9, "Accuracy": 0.8}}
    claimed = ledger.claim("blob:incoming/ünï.csv@0x8DC1", "blob", fields).entry
    expected = fields | {"seen": when.astimezone(timezone.utc)}
    assert claimed.fields == expected
    assert ledger.get(claimed.key).fields == expected
    assert ledger.get(claimed.key).created.tzinfo is not None

    updated = ledger.update(claimed, State.SUBMITTED, {"run_id": "run-9", "valid": None,
                                                      "notified": ["a", "b"]})
    stored = ledger.get(claimed.key)
    assert stored == updated
    merged = expected | {"run_id": "run-9", "notified": ["a", "b"]}
    del merged["valid"]  # None removes a field
    assert stored.fields == merged
    assert stored.created == claimed.created and stored.updated >= claimed.updated


@pytest.mark.parametrize("key", [
    "blob:incoming/sub/folder/diabetes.csv@0x8DC9",
    "blob:incoming/weird#name?.csv@0x8DCA",
    "manual:back\\slash",
    "timer:ünïcødé/日本語@2026-11-29T02:00:00Z",
    "event:" + "x" * 1500,                       # longer than a RowKey may be
])
def test_keys_with_characters_a_row_key_cannot_hold(ledger, key):
    assert ledger.claim(key, "blob", {}).won
    assert ledger.get(key).key == key
    assert not ledger.claim(key, "blob", {}).won


def test_get_of_an_unknown_key_is_none(ledger):
    assert ledger.get("manual:nobody") is None


def test_find_by_run(ledger):
    ledger.claim("manual:a", "manual", {})
    b = ledger.claim("manual:b", "manual", {}).entry
    ledger.update(b, State.SUBMITTED, {"run_id": "run-b"})
    found = ledger.find_by_run("run-b")
    assert found is not None and found.key == "manual:b" and found.state == State.SUBMITTED
    assert ledger.find_by_run("run-unknown") is None


def test_list_in_state_filters_on_state_and_last_update(ledger):
    a = ledger.claim("manual:a", "manual", {}).entry
    b = ledger.claim("manual:b", "manual", {}).entry
    ledger.claim("manual:c", "manual", {})
    before_updates = datetime.now(timezone.utc)
    ledger.update(a, State.SUBMITTED, {"run_id": "run-a"})
    ledger.update(b, State.SUBMITTED, {"run_id": "run-b"})
    after_updates = datetime.now(timezone.utc) + timedelta(seconds=1)

    assert sorted(e.key for e in ledger.list_in_state(State.SUBMITTED, after_updates)) == ["manual:a", "manual:b"]
    assert ledger.list_in_state(State.SUBMITTED, before_updates) == []
    assert [e.key for e in ledger.list_in_state(State.CLAIMED, after_updates)] == ["manual:c"]
    with pytest.raises(ValueError, match="timezone-aware"):
        ledger.list_in_state(State.SUBMITTED, datetime(2026, 1, 1))


def test_recent_is_newest_first_and_bounded(ledger):
    for name in ("first", "second", "third"):
        ledger.claim(f"manual:{name}", "manual", {})
    ledger.update(ledger.get("manual:first"), State.SUBMITTED, {"run_id": "r"})  # updating does not reorder
    assert [e.key for e in ledger.recent(2)] == ["manual:third", "manual:second"]
    assert [e.key for e in ledger.recent(10)] == ["manual:third", "manual:second", "manual:first"]
    assert ledger.recent(0) == []


def test_bad_table_name_and_reserved_field_names_are_clear_errors(storage_connection, ledger):
    with pytest.raises(ValueError, match="RETRAINER_LEDGER_TABLE"):
        TableLedger(storage_connection, "my-ledger")
    with pytest.raises(ValueError, match="'state'"):
        ledger.claim("manual:x", "manual", {"state": "mine"})
    with pytest.raises(ValueError, match="'run-id'"):
        ledger.claim("manual:x", "manual", {"run-id": "r"})


# ---------------------------------------------------------------- Table Storage's size limits

def utf16_units(value: str) -> int:
    return len(value.encode("utf-16-le")) // 2


def test_a_100_kib_error_message_is_stored_truncated_with_a_marker(ledger):
    """Issue 7 item 8: a string property holds at most 64 KiB in UTF-16; Azurite, like Azure, answers a longer
    one with 400 ("The property value exceeds the maximum allowed size (64KB)") on every attempt."""
    message = "Azure ML: step train failed\n" + "Traceback line\n" * (100 * 1024 // 15)
    assert len(message) >= 100 * 1024
    entry = ledger.claim("blob:incoming/long.csv@0x1", "blob", {}).entry

    failed = ledger.update(entry, State.FAILED, {"error": message, "run_id": "run-1"})

    stored = ledger.get("blob:incoming/long.csv@0x1")
    assert stored == failed
    error = stored.fields["error"]
    assert error.startswith("Azure ML: step train failed\nTraceback line\n")
    assert error.endswith(f"[truncated by retrainer: {len(message)} characters in all]")
    assert utf16_units(error) <= 32 * 1024
    assert stored.fields["run_id"] == "run-1"


def test_truncation_counts_utf16_units_and_never_splits_a_character(ledger):
    message = "\U0001F4A5" * 40_000          # two UTF-16 units each: 80,000 units
    entry = ledger.claim("blob:incoming/emoji.csv@0x1", "blob", {}).entry

    ledger.update(entry, State.FAILED, {"error": message})

    error = ledger.get("blob:incoming/emoji.csv@0x1").fields["error"]
    kept = error[:error.index("\n[truncated")]
    assert kept and set(kept) == {"\U0001F4A5"}
    assert utf16_units(error) <= 32 * 1024


def test_a_row_of_many_long_fields_is_kept_within_the_entity_limit(ledger):
    """An entity holds at most 1 MiB: twenty fields of 60 KiB each are shortened until the row fits."""
    fields = {f"detail_{i}": f"{i}:" + "x" * 30_000 for i in range(20)}
    entry = ledger.claim("blob:incoming/wide.csv@0x1", "blob", {}).entry

    ledger.update(entry, State.FAILED, fields)

    stored = ledger.get("blob:incoming/wide.csv@0x1").fields
    assert all(stored[name].startswith(f"{i}:x") for i, name in enumerate(fields))
    assert sum(2 * utf16_units(stored[name]) for name in fields) < 1024 * 1024


def test_a_too_long_structured_field_reads_back_as_its_truncated_text(ledger):
    entry = ledger.claim("blob:incoming/list.csv@0x1", "blob", {}).entry

    ledger.update(entry, State.FAILED, {"skipped_files": [f"incoming/part-{i:06d}.csv" for i in range(3000)],
                                        "steps": ["prep", "train"]})

    stored = ledger.get("blob:incoming/list.csv@0x1").fields
    assert stored["skipped_files"].startswith('["incoming/part-000000.csv"')
    assert "[truncated by retrainer:" in stored["skipped_files"]
    assert stored["steps"] == ["prep", "train"]     # the short one still reads back as a list
