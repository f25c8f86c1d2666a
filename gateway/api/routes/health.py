"""Operations of the gateway itself: /healthz and /metrics (Prometheus text)."""

import os
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from gateway.api.deps import RuntimeDep
from gateway.api.schemas.responses import Health
from gateway.core.metrics import Metrics
from gateway.db.session import ping
from gateway.operations import queries
from gateway.submitter.loop import Submitter

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health)
def healthz(request: Request, runtime: RuntimeDep) -> JSONResponse:
    submitter: Submitter = request.app.state.submitter
    checks: dict[str, Any] = {}
    try:
        checks["chain_block"] = runtime.chain.w3.eth.block_number
    except Exception as exc:  # noqa: BLE001 - health reports any failure
        checks["chain_error"] = str(exc)
    try:
        ping(runtime.sessions)
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001
        checks["database_error"] = str(exc)
    healthy = "chain_block" in checks and checks.get("database") == "ok"
    checks["submitter_leader"] = submitter.is_leader  # this process submits
    try:
        checks["submitter_running"] = submitter.someone_leads()  # some process does
    except Exception as exc:  # noqa: BLE001 - health reports any failure
        checks["submitter_error"] = str(exc)
    checks["process"] = os.getpid()  # which gateway process answered (with --workers)
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
