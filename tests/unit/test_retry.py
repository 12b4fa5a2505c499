"""Bounded exponential backoff with full jitter: what is retried, how often, and how long it waits."""
from __future__ import annotations

import pytest
import requests
from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError
from azure.core.pipeline.transport import RequestsTransportResponse
from azure.core.rest import HttpRequest

from retrainer.retry import Retry


def http_error(status: int, headers: dict[str, str] | None = None) -> HttpResponseError:
    """The error an azure SDK raises for an HTTP answer with this status."""
    raw = requests.Response()
    raw.status_code, raw.reason, raw._content = status, "test", b""
    raw.headers.update(headers or {})
    return HttpResponseError(response=RequestsTransportResponse(HttpRequest("GET", "http://127.0.0.1/"), raw))


class Script:
    """An operation that raises the given errors in turn, then returns "done"."""

    def __init__(self, *errors: BaseException):
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


@pytest.fixture
def sleeps() -> list[float]:
    return []


def test_throttling_and_server_errors_are_retried_until_success(sleeps):
    operation = Script(http_error(429), http_error(503), http_error(500))
    assert Retry(sleep=sleeps.append)(operation) == "done"
    assert operation.calls == 4 and len(sleeps) == 3


@pytest.mark.parametrize("error", [ServiceRequestError("refused"), ServiceResponseError("reset"),
                                   ConnectionResetError("reset"), TimeoutError("slow")])
def test_connection_errors_are_retried(sleeps, error):
    operation = Script(error)
    assert Retry(sleep=sleeps.append)(operation) == "done"
    assert operation.calls == 2


@pytest.mark.parametrize("error", [http_error(400), http_error(404), http_error(409), http_error(412),
                                   http_error(501), ValueError("a bug")])
def test_answers_that_will_not_change_are_not_retried(sleeps, error):
    operation = Script(error)
    with pytest.raises(type(error)):
        Retry(sleep=sleeps.append)(operation)
    assert operation.calls == 1 and sleeps == []


def test_attempts_are_bounded_and_the_last_error_is_raised(sleeps):
    operation = Script(*[http_error(503)] * 10)
    with pytest.raises(HttpResponseError) as raised:
        Retry(attempts=4, sleep=sleeps.append)(operation)
    assert raised.value.status_code == 503
    assert operation.calls == 4 and len(sleeps) == 3


def test_delays_grow_exponentially_up_to_the_cap():
    upper = Retry(base=0.5, cap=3.0, jitter=lambda low, high: high)
    assert [upper.backoff(n) for n in range(6)] == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]


def test_jitter_stays_within_zero_and_the_exponential_bound(sleeps):
    policy = Retry(attempts=9, base=0.25, cap=4.0, sleep=sleeps.append)
    with pytest.raises(ServiceRequestError):
        policy(Script(*[ServiceRequestError("down")] * 9))
    assert len(sleeps) == 8
    for attempt, delay in enumerate(sleeps):
        assert 0.0 <= delay <= min(4.0, 0.25 * 2 ** attempt)
    assert len(set(sleeps)) > 1  # jittered, not a fixed schedule


def test_retry_after_is_honoured_within_the_cap(sleeps):
    no_jitter = dict(sleep=sleeps.append, jitter=lambda low, high: low)
    Retry(cap=10.0, **no_jitter)(Script(http_error(429, {"Retry-After": "3"})))
    Retry(cap=10.0, **no_jitter)(Script(http_error(429, {"Retry-After": "120"})))
    Retry(cap=10.0, **no_jitter)(Script(http_error(503, {"Retry-After": "Sun, 29 Nov 2026 10:00:00 GMT"})))
    assert sleeps == [3.0, 10.0, 0.0]


def test_arguments_are_passed_through():
    assert Retry()(lambda a, *, b: a + b, 1, b=2) == 3


def test_a_policy_that_cannot_try_is_refused():
    with pytest.raises(ValueError, match="attempts >= 1"):
        Retry(attempts=0)
