"""Routes of the revision-2 operations: awards, refunds of redemptions, member migration (202:
accepted, on its way to the chain)."""

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from gateway.api.deps import IdempotencyDep, PartnerCaller
from gateway.api.routes.operations import signed
from gateway.api.schemas.requests import AwardCreate, MigrationCreate, PinAuthorization, RefundCreate, Signed
from gateway.api.schemas.responses import API_ERRORS, Accepted
from gateway.core.metrics import Metrics
from gateway.operations.awards import AwardRequest, accept_award
from gateway.operations.migration import MigrationRequest, migrate
from gateway.operations.refunds import RefundRequest, accept_refund

router = APIRouter(tags=["operations"], responses=API_ERRORS)


class _Keyed(BaseModel):
    """What an Idempotency-Key's request hash covers for a request whose path names its subject."""

    member_id: str
    body: MigrationCreate


def _accepted(request: Request) -> None:
    metrics: Metrics = request.app.state.metrics
    metrics.add("operations_accepted_total")


@router.post("/v1/awards", status_code=202, response_model=Accepted)
def award(request: Request, body: AwardCreate, who: PartnerCaller, idem: IdempotencyDep) -> JSONResponse:
    """Issues points without a purchase, for a reason from SPEC's list, from the partner's allowance."""
    runtime = idem.runtime
    award = AwardRequest(
        member_id=body.member_id,
        receipt_id=body.receipt_id,
        points=body.points,
        reason=body.reason,
        note=body.note,
        partner_signature=signed(body.partner_signature),
        issued_at=body.issued_at,
        receipt_salt=body.receipt_salt,
    )
    response = idem.run(who, body, lambda session: accept_award(runtime, session, caller=who, request=award))
    _accepted(request)
    return response


@router.post("/v1/refunds", status_code=202, response_model=Accepted)
def refund(request: Request, body: RefundCreate, who: PartnerCaller, idem: IdempotencyDep) -> JSONResponse:
    """Gives back points of a confirmed redemption at this partner (goods paid with points returned)."""
    runtime = idem.runtime
    refund = RefundRequest(
        redemption_receipt_id=body.redemption_receipt_id,
        receipt_id=body.receipt_id,
        points=body.points,
        reason=body.reason,
        partner_signature=signed(body.partner_signature),
        issued_at=body.issued_at,
        receipt_salt=body.receipt_salt,
    )
    response = idem.run(who, body, lambda session: accept_refund(runtime, session, caller=who, request=refund))
    _accepted(request)
    return response


@router.post("/v1/members/{member_id}/migrate", status_code=202, response_model=Accepted)
def migrate_member(
    request: Request, member_id: str, body: MigrationCreate, who: PartnerCaller, idem: IdempotencyDep
) -> JSONResponse:
    """Moves the member's points, expiry, tier history and assigned tier to a new address of its own."""
    auth = body.authorization
    migration = MigrationRequest(
        member_id=member_id,
        address=body.address,
        pin=auth.pin if isinstance(auth, PinAuthorization) else None,
        member_signature=signed(auth) if isinstance(auth, Signed) else None,
    )
    # The path's member is part of the request: the same body for another member is another request.
    store = idem.store(who, _Keyed(member_id=member_id, body=body))
    response = migrate(idem.runtime, store=store, caller=who, request=migration)
    _accepted(request)
    return JSONResponse(response.body, status_code=response.status)
