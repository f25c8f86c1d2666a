"""Operations of the gateway itself: /healthz and /metrics (Prometheus text).

/healthz answers from a snapshot that a background thread refreshes every
PROBE_INTERVAL_SECONDS (chain head, a trivial database query, the submitter lock): on the
event loop, with no SQL and no chain call of its own, so it answers in milliseconds however
deep the queue and however busy the worker threads. A probe that has not finished for
STALE_SECONDS (a hung chain or database) makes it answer 503.
"""

import os
import threading
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from gateway.api.deps import RuntimeDep
from gateway.api.schemas.responses import Health
from gateway.app.runtime import Runtime
from gateway.core.metrics import Metrics
from gateway.db.session import ping
from gateway.operations import queries
from gateway.submitter.loop import Submitter

router = APIRouter(tags=["operations"])


PROBE_INTERVAL_SECONDS = 1.0
STALE_SECONDS = 15.0


class HealthProbe:
    """The latest health checks of this process, refreshed by `run` in a thread of its own."""

    def __init__(self, runtime: Runtime, submitter: Submitter) -> None:
        self.runtime, self.submitter = runtime, submitter
        self.checks: dict[str, Any] = {}
        self.checked_at = 0.0  # time.monotonic() of the last finished probe

    def probe(self) -> None:
        checks: dict[str, Any] = {}
        try:
            checks["chain_block"] = self.runtime.chain.w3.eth.block_number
        except Exception as exc:  # noqa: BLE001 - health reports any failure
            checks["chain_error"] = str(exc)
        try:
            ping(self.runtime.sessions)
            checks["database"] = "ok"
        except Exception as exc:  # noqa: BLE001
            checks["database_error"] = str(exc)
        try:
            checks["submitter_running"] = self.submitter.someone_leads()  # some process does
        except Exception as exc:  # noqa: BLE001 - health reports any failure
            checks["submitter_error"] = str(exc)
        self.checks, self.checked_at = checks, time.monotonic()

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(PROBE_INTERVAL_SECONDS):
            self.probe()

    def answer(self) -> tuple[dict[str, Any], bool]:
        checks = dict(self.checks)
        age = time.monotonic() - self.checked_at
        healthy = "chain_block" in checks and checks.get("database") == "ok" and age < STALE_SECONDS
        if age >= STALE_SECONDS:
            checks["probe_error"] = f"the last health probe finished {age:.0f} s ago (chain or database hung?)"
        checks["checked_seconds_ago"] = round(age, 3)
        checks["submitter_leader"] = self.submitter.is_leader  # this process submits
        checks["process"] = os.getpid()  # which gateway process answered (with --workers)
        return checks, healthy


@router.get("/healthz", response_model=Health, responses={503: {"model": Health, "description": "not healthy"}})
async def healthz(request: Request) -> JSONResponse:
    probe: HealthProbe = request.app.state.health
    checks, healthy = probe.answer()
    return JSONResponse({"status": "ok" if healthy else "unavailable", **checks}, status_code=200 if healthy else 503)


@router.get("/metrics", response_class=PlainTextResponse)
def prometheus(request: Request, runtime: RuntimeDep) -> PlainTextResponse:
    """Prometheus text format: counters of this process, the queue and operations by status
    and the batch sizes from the database (right whichever process submitted them)."""
    metrics: Metrics = request.app.state.metrics
    with runtime.sessions() as session:
        depth = queries.queue_depth(session)
        by_status = queries.count_by_status(session)
        batch_count, batch_sum = queries.batch_totals(session)
    lines = []
    for name in ("operations_accepted_total", "operations_confirmed_total", "operations_rejected_total"):
        lines += [f"# TYPE loyalty_{name} counter", f"loyalty_{name} {metrics.counters[name]}"]
    lines += ["# TYPE loyalty_queue_depth gauge", f"loyalty_queue_depth {depth}"]
    lines += ["# TYPE loyalty_operations gauge"]
    lines += [f'loyalty_operations{{status="{s}"}} {n}' for s, n in sorted(by_status.items())]
    with metrics.lock:
        observed, sums = dict(metrics.observed), dict(metrics.sums)
    lines += [
        "# TYPE loyalty_batch_size summary",
        f"loyalty_batch_size_count {batch_count}",
        f"loyalty_batch_size_sum {batch_sum}",
    ]
    lines += [
        "# TYPE loyalty_submit_to_confirm_seconds summary",
        f"loyalty_submit_to_confirm_seconds_count {observed.get('submit_to_confirm_seconds', 0)}",
        f"loyalty_submit_to_confirm_seconds_sum {sums.get('submit_to_confirm_seconds', 0.0):.6f}",
    ]
    return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")
