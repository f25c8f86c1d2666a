"""Programme metrics (SPEC section 5, r2): auditors and the operator for anyone, a partner for
itself only. Computed from chain events alone (gateway/audit/metrics.py)."""

import threading
from datetime import UTC, date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from gateway.api.deps import AnyCaller, RuntimeDep
from gateway.api.schemas.programme import ProgrammeMetrics
from gateway.api.schemas.requests import MAX_PARTNER_ID
from gateway.api.schemas.responses import API_ERRORS
from gateway.audit.metrics import metrics_of
from gateway.audit.report import History, default_period
from gateway.core.errors import ErrorCode, Forbidden, Invalid
from gateway.web.reads import HistoryCache

router = APIRouter(tags=["audit"], responses=API_ERRORS)
_lock = threading.Lock()
MAX_CHURN_DAYS = 3650


def history(request: Request) -> History:
    """The ledger's events, kept per app and brought up to date (shared with the pages)."""
    with _lock:
        cache = getattr(request.app.state, "page_history", None)
        if cache is None:
            cache = request.app.state.page_history = HistoryCache()
    result: History = cache.get(request.app.state.runtime)
    return result


def _seconds(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


@router.get("/v1/audit/metrics", response_model=ProgrammeMetrics)
def programme_metrics(
    request: Request,
    who: AnyCaller,
    runtime: RuntimeDep,
    period_from: Annotated[date | None, Query(alias="from")] = None,
    period_to: Annotated[date | None, Query(alias="to")] = None,
    partner_id: Annotated[int | None, Query(ge=1, le=MAX_PARTNER_ID)] = None,
    churn_days: Annotated[int, Query(ge=1, le=MAX_CHURN_DAYS)] = 60,
) -> dict[str, Any]:
    """The period [from, to) (dates, UTC; default: the whole history), coalition-wide or for one
    partner. A partner key gets its own figures (partner_id defaults to it)."""
    if who.role == "partner":
        if partner_id not in (None, who.partner_id):
            raise Forbidden("a partner sees its own metrics only", code=ErrorCode.FORBIDDEN)
        partner_id = who.partner_id
    chain = history(request)
    start, end = default_period(chain)
    if period_from is not None:
        start = _seconds(period_from)
    if period_to is not None:
        end = _seconds(period_to)
    if end <= start:
        raise Invalid("the period must end after it starts", code=ErrorCode.VALIDATION_ERROR)
    figures = metrics_of(
        chain.events, chain.times, period_from=start, period_to=end, partner_id=partner_id, churn_days=churn_days
    ).as_json()
    figures["period"] = {"from": figures.pop("from"), "to": figures.pop("to")}
    figures["source"] = {
        "chain_id": chain.chain_id,
        "address": chain.address,
        "from_block": chain.from_block,
        "to_block": chain.to_block,
    }
    return figures
