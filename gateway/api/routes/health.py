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
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import func, select

from gateway.api.schemas.responses import Health
from gateway.app.runtime import Runtime
from gateway.core.metrics import Metrics
from gateway.db.models import Partner
from gateway.db.session import ping
from gateway.operations import queries
from gateway.submitter.loop import Submitter
from gateway.webhooks.models import Delivery

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


ALLOWANCE_TTL_SECONDS = 10.0


class Figures:
    """The figures /metrics reads when scraped, the same whichever process answers: the queue
    and operations by status, batch sizes and the webhook backlog from the database, and each
    partner's allowance left from the chain (kept ALLOWANCE_TTL_SECONDS)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._allowances: tuple[float, dict[int, int]] = (0.0, {})
        self._lock = threading.Lock()

    def allowances(self, partner_ids: list[int]) -> dict[int, int]:
        with self._lock:
            read_at, cached = self._allowances
            if time.monotonic() - read_at < ALLOWANCE_TTL_SECONDS and set(cached) == set(partner_ids):
                return cached
            try:
                terms = self.runtime.ledger.views([("partner", (pid,)) for pid in partner_ids])
                cached = {
                    pid: int(t[5]) for pid, t in zip(partner_ids, terms, strict=True)
                }  # (signer, active, rates, currency, allowance...)
            except Exception:  # noqa: BLE001 - the chain is down: no allowance figures this time
                return {}
            self._allowances = (time.monotonic(), cached)
            return cached

    def text(self) -> str:
        """The figures in Prometheus text format, as integers (scripts/bench_gateway.py reads them so)."""
        with self.runtime.sessions() as session:
            depth = queries.queue_depth(session)
            by_status = queries.count_by_status(session)
            batch_count, batch_sum = queries.batch_totals(session)
            backlog = session.scalar(select(func.count()).select_from(Delivery).where(Delivery.status == "pending"))
            partner_ids = list(session.scalars(select(Partner.id).order_by(Partner.id)))
        lines = ["# HELP loyalty_queue_depth operations on their way to the chain", "# TYPE loyalty_queue_depth gauge"]
        lines += [f"loyalty_queue_depth {depth}"]
        lines += ["# HELP loyalty_operations operations by status", "# TYPE loyalty_operations gauge"]
        lines += [f'loyalty_operations{{status="{s}"}} {n}' for s, n in sorted(by_status.items())]
        lines += ["# HELP loyalty_batch_size operations per batch sent", "# TYPE loyalty_batch_size summary"]
        lines += [f"loyalty_batch_size_count {batch_count}", f"loyalty_batch_size_sum {batch_sum}"]
        lines += [
            "# HELP loyalty_webhook_backlog webhook deliveries not yet made",
            "# TYPE loyalty_webhook_backlog gauge",
        ]
        lines += [f"loyalty_webhook_backlog {int(backlog or 0)}"]
        lines += [
            "# HELP loyalty_partner_allowance_points points each partner may still issue (on-chain)",
            "# TYPE loyalty_partner_allowance_points gauge",
        ]
        lines += [
            f'loyalty_partner_allowance_points{{partner_id="{pid}"}} {points}'
            for pid, points in sorted(self.allowances(partner_ids).items())
        ]
        return "\n".join(lines) + "\n"


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
def prometheus(request: Request) -> Response:
    """Prometheus text format: request latency per route, submit-to-confirm time and operation
    counters (of every gateway process under --workers), and the queue, batch sizes, webhook
    backlog and allowance left per partner (read when scraped)."""
    metrics: Metrics = request.app.state.metrics
    figures: Figures = request.app.state.figures
    return Response(metrics.exposition() + figures.text().encode(), media_type=CONTENT_TYPE_LATEST)
