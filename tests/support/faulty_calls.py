"""Faults at the local backend's call seam (`LocalMLBackend(calls=...)`): per attempt, a transient error
before the call (it never happened), a lost response after it (it happened, the caller cannot tell), or a
delay. Planned per operation name (`{"create_run": [LOSE_RESPONSE]}` faults the next attempt of create_run),
or at a seeded random rate for every operation."""
from __future__ import annotations

import random
import threading
import time
from collections import Counter
from typing import Callable, Mapping, Sequence

from retrainer.retry import Retry
from tests.support.fault_proxy import DELAY, LOSE_RESPONSE, REFUSE

DELAY_SECONDS = 0.2


class FaultyCalls:
    def __init__(self, retry: Retry, plan: Mapping[str, Sequence[str]] | None = None, *, rate: float = 0.0,
                 seed: int = 0) -> None:
        self._retry = retry
        self._plan = {name: list(faults) for name, faults in (plan or {}).items()}
        self._rate = rate
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self.injected: Counter[tuple[str, str]] = Counter()    # (operation, fault) -> times

    def __call__(self, operation: Callable, *args, **kwargs):
        name = getattr(operation, "__name__", repr(operation))

        def attempt(*a, **k):
            fault = self._next(name)
            if fault == REFUSE:
                raise ConnectionRefusedError(f"injected: {name} refused")
            if fault == DELAY:
                time.sleep(DELAY_SECONDS)
            result = operation(*a, **k)
            if fault == LOSE_RESPONSE:
                raise ConnectionResetError(f"injected: the response of {name} was lost")
            return result

        attempt.__name__ = name
        return self._retry(attempt, *args, **kwargs)

    def _next(self, name: str) -> str | None:
        with self._lock:
            planned = self._plan.get(name)
            if planned:
                fault = planned.pop(0)
            elif self._rate and self._random.random() < self._rate:
                fault = self._random.choice((REFUSE, LOSE_RESPONSE, DELAY))
            else:
                return None
            self.injected[(name, fault)] += 1
            return fault
