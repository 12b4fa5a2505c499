"""Bounded exponential backoff with full jitter, for transient faults of Azure services.

Every adapter call to Storage, Event Grid or a webhook goes through one `Retry`. The SDK clients are built
with their own retries off (`retry_total=0`), so this is the only retry layer and its bound is the real one.
"""
from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field
from typing import Callable, TypeVar

from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError

log = logging.getLogger(__name__)

T = TypeVar("T")

# The statuses azure-core's own RetryPolicy retries: throttling, timeouts and server faults
# (501 Not Implemented and 505 are answers, not faults).
TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


def is_transient(error: BaseException) -> bool:
    """True for a fault that a later attempt may not meet: throttling, 5xx, a dropped connection."""
    if isinstance(error, (ServiceRequestError, ServiceResponseError, ConnectionError, TimeoutError)):
        return True
    return isinstance(error, HttpResponseError) and error.status_code in TRANSIENT_STATUSES


@dataclass(frozen=True)
class Retry:
    """Call an operation up to `attempts` times; before attempt n+1 sleep uniform(0, min(cap, base * 2**n))
    seconds ("full jitter"), or the server's Retry-After when it asks for longer (still at most `cap`)."""

    attempts: int = 5
    base: float = 0.5
    cap: float = 20.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    jitter: Callable[[float, float], float] = field(default=random.uniform, repr=False)

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.base < 0 or self.cap < 0:
            raise ValueError(f"Retry needs attempts >= 1 and base, cap >= 0 (got {self})")

    def __call__(self, operation: Callable[..., T], *args, **kwargs) -> T:
        for attempt in range(self.attempts - 1):
            try:
                return operation(*args, **kwargs)
            except Exception as error:
                if not is_transient(error):
                    raise
                delay = max(self.backoff(attempt), min(self.cap, _retry_after(error)))
                log.warning("transient fault in %s (%s); attempt %d of %d in %.2fs",
                            _name(operation), _describe(error), attempt + 2, self.attempts, delay)
                self.sleep(delay)
        return operation(*args, **kwargs)

    def backoff(self, attempt: int) -> float:
        """The jittered delay after failed attempt number `attempt` (0-based)."""
        return self.jitter(0.0, min(self.cap, self.base * 2 ** attempt))


def _retry_after(error: BaseException) -> float:
    response = getattr(error, "response", None)
    headers = getattr(response, "headers", None) or {}
    try:
        return max(0.0, float(headers.get("Retry-After", 0)))
    except (TypeError, ValueError):  # an HTTP date: fall back to our own backoff
        return 0.0


def _describe(error: BaseException) -> str:
    status = getattr(error, "status_code", None)
    return f"{type(error).__name__} {status}" if status else type(error).__name__


def _name(operation: Callable) -> str:
    name = getattr(operation, "__qualname__", None)
    return name if isinstance(name, str) else repr(operation)


retry = Retry()
"""The policy every adapter uses unless given another: `retry(operation, *args, **kwargs)`."""


def once(create: Callable[..., T], made_by_earlier_attempt: Callable[[], T | None]) -> Callable[..., T]:
    """`create` made safe to retry: every attempt after the first looks first for what an earlier one made
    (its outcome is unknown when its response was lost) and returns that instead of creating another."""
    attempted = False

    def attempt(*args, **kwargs):
        nonlocal attempted
        if attempted and (made := made_by_earlier_attempt()) is not None:
            return made
        attempted = True
        return create(*args, **kwargs)

    # Named as `create` for the retry log and the fault seam's tests. Not functools.wraps: an autospec'd SDK
    # method's __name__ is not a string.
    name = getattr(create, "__name__", None)
    attempt.__name__ = name if isinstance(name, str) else repr(create)
    attempt.__qualname__ = _name(create)
    return attempt
