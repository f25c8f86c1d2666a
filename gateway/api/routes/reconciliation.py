"""A partner's books against the chain (SPEC section 6, r2): the reconciliation feed of its
operations, and its own line of the settlement statement. The partner itself, auditors and
the operator."""

from datetime import UTC, date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import PlainTextResponse, Response

from gateway.api.deps import AnyCaller, RuntimeDep
from gateway.api.routes.programme_metrics import history
from gateway.api.schemas.programme import OperationFeed, PartnerStatement
from gateway.api.schemas.requests import MAX_PARTNER_ID
from gateway.api.schemas.responses import API_ERRORS
from gateway.audit.report import default_period, statement
from gateway.core.errors import ErrorCode, Invalid, NotFound
from gateway.operations import feed

router = APIRouter(tags=["reconciliation"], responses=API_ERRORS)


def _moment(day: date | None) -> datetime | None:
    return None if day is None else datetime(day.year, day.month, day.day, tzinfo=UTC)


@router.get(
    "/v1/partners/{partner_id}/operations",
    response_model=OperationFeed,
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}},
)
def operations(
    request: Request,
    partner_id: Annotated[int, Path(ge=0, le=MAX_PARTNER_ID)],
    who: AnyCaller,
    runtime: RuntimeDep,
    period_from: Annotated[date | None, Query(alias="from", description="accepted on or after (UTC day)")] = None,
    period_to: Annotated[date | None, Query(alias="to", description="accepted before (UTC day)")] = None,
    kind: Annotated[str | None, Query(max_length=16)] = None,
    status: Annotated[str | None, Query(max_length=16)] = None,
    cursor: Annotated[str | None, Query(max_length=20)] = None,
    limit: Annotated[int, Query(ge=1, le=feed.MAX_LIMIT)] = 100,
) -> Any:
    """The partner's operations, oldest first, each with its receipt hash and on-chain position
    (`tx_hash`, `block_number`, `log_index`). `Accept: text/csv` gives the page as CSV, with
    the next cursor in the `Next-Cursor` header."""
    if not 1 <= partner_id < 2**32:
        raise NotFound(f"no partner {partner_id}", code=ErrorCode.UNKNOWN_PARTNER)
    with runtime.sessions() as session:
        page = feed.partner_operations(
            session,
            caller=who,
            partner_id=partner_id,
            accepted_from=_moment(period_from),
            accepted_to=_moment(period_to),
            kind=kind,
            status=status,
            cursor=feed.parse_cursor(cursor),
            limit=limit,
        )
    if "text/csv" in request.headers.get("accept", ""):
        headers = {"Next-Cursor": page["next_cursor"]} if page["next_cursor"] else {}
        return PlainTextResponse(feed.as_csv(page), media_type="text/csv", headers=headers)
    return page


@router.get("/v1/partners/{partner_id}/statement", response_model=PartnerStatement)
def partner_statement(
    request: Request,
    partner_id: Annotated[int, Path(ge=0, le=MAX_PARTNER_ID)],
    who: AnyCaller,
    runtime: RuntimeDep,
    period_from: Annotated[date | None, Query(alias="from")] = None,
    period_to: Annotated[date | None, Query(alias="to")] = None,
) -> Response | dict[str, Any]:
    """The partner's own line of the settlement statement (SPEC section 5) for [from, to),
    computed from chain events alone (default: the whole history)."""
    if not 1 <= partner_id < 2**32:
        raise NotFound(f"no partner {partner_id}", code=ErrorCode.UNKNOWN_PARTNER)
    feed.check_reader(who, partner_id)
    chain = history(request)
    start, end = default_period(chain)
    if period_from is not None:
        start = int(datetime(period_from.year, period_from.month, period_from.day, tzinfo=UTC).timestamp())
    if period_to is not None:
        end = int(datetime(period_to.year, period_to.month, period_to.day, tzinfo=UTC).timestamp())
    if end <= start:
        raise Invalid("the period must end after it starts", code=ErrorCode.VALIDATION_ERROR)
    st = statement(chain, period_from=start, period_to=end)
    line = next((p for p in st.partners if p.partner_id == partner_id), None)
    if line is None:
        with runtime.sessions() as session:
            from gateway.db.models import Partner

            if session.get(Partner, partner_id) is None:
                raise NotFound(f"no partner {partner_id}", code=ErrorCode.UNKNOWN_PARTNER)
    return {
        "partner_id": partner_id,
        "period": {"from": start, "to": end},
        "currency": line.currency if line else "",
        "issued": line.issued if line else 0,
        "awarded": line.awarded if line else 0,
        "bonus": line.bonus if line else 0,
        "reversed": line.reversed if line else 0,
        "redeemed": line.redeemed if line else 0,
        "refunded": line.refunded if line else 0,
        "net_points": line.net_points if line else 0,
        "owes_minor": line.owes if line else 0,
        "owed_minor": line.owed if line else 0,
        "net_amount_minor": line.net_amount if line else 0,
        "issue_price_minor": line.issue_price if line else 0,
        "redemption_price_minor": line.redemption_price if line else 0,
        "point_value_minor": st.point_value,
        "settlement_currency": st.currency,
        "source": {"chain_id": chain.chain_id, "address": chain.address, "to_block": chain.to_block},
    }
