"""Waiting for something another process or thread does. The deadline only stops a hung test; it is
never a performance expectation."""
from __future__ import annotations

from typing import Any, Callable

from devhost.polling import poll

DEADLINE = 180.0


def wait_for(condition: Callable[[], Any], what: str, timeout: float = DEADLINE) -> Any:
    """Poll `condition` until it returns something truthy, and return that."""
    result = poll(condition, timeout, interval=0.05)
    if not result:
        raise AssertionError(f"{what} did not happen within {timeout:.0f}s")
    return result
