"""Counters and summaries of this process, for /metrics (Prometheus text format)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass
class Metrics:
    counters: Counter[str] = field(default_factory=Counter)
    # Summaries as Prometheus keeps them: a running count and sum each (bounded memory).
    observed: Counter[str] = field(default_factory=Counter)
    sums: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, name: str, value: int = 1) -> None:
        with self.lock:
            self.counters[name] += value

    def observe(self, name: str, values: Iterable[float]) -> None:
        with self.lock:
            for value in values:
                self.observed[name] += 1
                self.sums[name] = self.sums.get(name, 0.0) + value
