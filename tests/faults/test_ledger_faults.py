"""The Table Storage ledger through the fault proxy: a write whose response is lost is still the writer's."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest

from retrainer.adapters.table_ledger import TableLedger
from retrainer.ports import ConcurrencyError, State
from retrainer.retry import Retry
from tests.support.fault_proxy import LOSE_RESPONSE, REFUSE, Fault

NO_WAIT = Retry(attempts=4, base=0.0, sleep=lambda seconds: None)


def fault_next(proxy, kind: str, method: str):
    """Fault the next `method` request once, then forward everything."""
    left = [1]

    def policy(verb, path):
        if verb == method and left[0]:
            left[0] -= 1
            return Fault(kind)
        return None

    proxy.policy = policy


@pytest.fixture
def ledger(proxied_storage):
    return TableLedger(proxied_storage, "faults" + uuid.uuid4().hex[:12], retry=NO_WAIT)


@pytest.mark.parametrize("kind", [LOSE_RESPONSE, REFUSE])
def test_an_update_whose_response_was_lost_is_recognised_as_the_writers_own(ledger, table_proxy, kind):
    entry = ledger.claim("blob:incoming/a.csv@1", "blob", {"size": 1}).entry
    fault_next(table_proxy, kind, "PUT")    # update_entity REPLACE is a conditional PUT

    final = ledger.update(entry, State.REGISTERED, {"notified": False})

    assert table_proxy.faults[kind] == 1
    assert final.state == State.REGISTERED and final.fields["notified"] is False
    assert ledger.update(final, final.state, {"notified": True}).fields["notified"] is True, \
        "the returned ETag is the row's current one"


def test_another_writers_change_is_still_a_concurrency_error(ledger, table_proxy):
    entry = ledger.claim("blob:incoming/b.csv@1", "blob", {}).entry
    ledger.update(entry, State.SUBMITTED, {"run_id": "r1"})
    fault_next(table_proxy, LOSE_RESPONSE, "PUT")
    with pytest.raises(ConcurrencyError):
        ledger.update(entry, State.FAILED, {})     # stale ETag: 412 with another writer's token in the row


def test_final_rows_with_a_pending_notification_are_listed_once_past_the_bound(ledger):
    pending = ledger.claim("k-pending", "blob", {}).entry
    pending = ledger.update(pending, State.REGISTERED, {"notified": False})
    sent = ledger.update(ledger.claim("k-sent", "blob", {}).entry, State.FAILED, {"notified": True})
    ledger.claim("k-open", "blob", {})

    later = datetime.now(timezone.utc) + timedelta(seconds=5)
    assert [e.key for e in ledger.list_unnotified(later)] == ["k-pending"]
    assert ledger.list_unnotified(pending.updated - timedelta(seconds=1)) == []
    assert sent.fields["notified"] is True
