"""The gateway's own Prometheus metrics (prometheus-client): counters of operations, request
latency per route and submit-to-confirm time as histograms.

One `Metrics` per app holds its metrics in a registry of its own (tests run many apps in one
process). Under `loyalty serve --workers N` (or `--submitter-process`) the parent sets
PROMETHEUS_MULTIPROC_DIR before the processes start: prometheus-client then keeps every
process's values in files there, and /metrics adds them up across processes
(`exposition`). Figures read from the database or the chain (queue depth, allowance left...)
are not kept here: /metrics reads them when scraped (gateway/api/routes/health.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
COUNTERS = ("operations_accepted_total", "operations_confirmed_total", "operations_rejected_total")
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CONFIRM_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0)


def multiprocess() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


class Metrics:
    """This process's counters and histograms, by the names the submitter and routes use."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.counters = {
            name: Counter(
                "loyalty_" + name.removesuffix("_total"),
                f"operations {name.split('_')[1]} by this gateway",
                registry=self.registry,
            )
            for name in COUNTERS
        }
        self.submit_to_confirm = Histogram(
            "loyalty_submit_to_confirm_seconds",
            "from an operation's acceptance to its confirmation on-chain",
            buckets=CONFIRM_BUCKETS,
            registry=self.registry,
        )
        self.requests = Histogram(
            "loyalty_request_duration_seconds",
            "HTTP requests by method, route (its path template) and status class",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    def add(self, name: str, value: int = 1) -> None:
        self.counters[name].inc(value)

    def observe(self, name: str, values: Iterable[float]) -> None:
        assert name == "submit_to_confirm_seconds", name
        for value in values:
            self.submit_to_confirm.observe(value)

    def request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, f"{status // 100}xx").observe(seconds)

    def exposition(self) -> bytes:
        """The text format of this process's metrics (of every process's, in multiprocess mode)."""
        if multiprocess():
            registry = CollectorRegistry()
            MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)
