"""Waiting for what another process or thread does: the demo, the benchmarks and the tests poll the same way."""
from __future__ import annotations

import time
from typing import Any, Callable


def poll(probe: Callable[[], Any], timeout: float, interval: float) -> Any:
    """Call `probe` every `interval` seconds until it returns something truthy, and return that; None when
    `timeout` seconds pass first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(interval)
    return None
