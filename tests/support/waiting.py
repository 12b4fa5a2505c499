"""Waiting for something another process or thread does. The deadline only stops a hung test; it is
never a performance expectation."""
from __future__ import annotations

import time
from typing import Any, Callable

DEADLINE = 180.0


def wait_for(condition: Callable[[], Any], what: str, timeout: float = DEADLINE) -> Any:
    """Poll `condition` until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"{what} did not happen within {timeout:.0f}s")
