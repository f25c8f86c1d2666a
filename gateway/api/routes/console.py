"""The operator console's reads (SPEC section 6, r2): the programme and the partners' terms
and totals, read from the chain. Changes are made with `loyalty operator` where the
operator's key is kept (docs/operators.md)."""

from typing import Annotated, Any

from fastapi import APIRouter, Path

from gateway.accounts import console
from gateway.api.deps import Admin, AnyCaller, RuntimeDep
from gateway.api.schemas.console import PartnerDetail, PartnerList, ProgrammeView
from gateway.api.schemas.requests import MAX_PARTNER_ID
from gateway.api.schemas.responses import API_ERRORS
from gateway.core.errors import ErrorCode, Forbidden

router = APIRouter(tags=["console"], responses=API_ERRORS)


@router.get("/v1/programme", response_model=ProgrammeView)
def programme(who: AnyCaller, runtime: RuntimeDep) -> dict[str, Any]:
    """Tiers, expiry policy, point value, transfers, pause, notice period and every scheduled
    change with its countdown: public terms of the programme, for any key."""
    return console.programme(runtime)


@router.get("/v1/partners", response_model=PartnerList)
def partners(who: Admin, runtime: RuntimeDep) -> dict[str, Any]:
    """Every partner on the ledger: terms, allowance left, totals, prices."""
    with runtime.sessions() as session:
        return console.partners(runtime, session)


@router.get("/v1/partners/{partner_id}", response_model=PartnerDetail)
def partner(
    partner_id: Annotated[int, Path(ge=1, le=MAX_PARTNER_ID)], who: AnyCaller, runtime: RuntimeDep
) -> dict[str, Any]:
    """One partner's terms and totals (the admin, auditors, or the partner itself)."""
    if who.role == "partner" and who.partner_id != partner_id:
        raise Forbidden("a partner key reads only its own partner", code=ErrorCode.FORBIDDEN)
    with runtime.sessions() as session:
        return console.partner(runtime, session, partner_id)
