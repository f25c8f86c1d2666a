"""Operation routes: earn, redemption, reversal (202: accepted, on its way to the chain), and
reading an operation back."""

from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from gateway.api.coalesce import Coalesced
from gateway.api.deps import AnyCaller, IdempotencyDep, PartnerCaller, RuntimeDep
from gateway.api.schemas.requests import EarnCreate, PinAuthorization, RedemptionCreate, ReversalCreate, Signed
from gateway.api.schemas.responses import API_ERRORS, Accepted, OperationView
from gateway.core.metrics import Metrics
from gateway.core.security import Caller
from gateway.operations import accept, queries
from gateway.operations.signatures import SignedFields

router = APIRouter(tags=["operations"], responses=API_ERRORS)


def signed(value: Signed | None) -> SignedFields | None:
    return SignedFields(value.signature, value.nonce, value.deadline) if value else None


def _accepted(request: Request) -> None:
    metrics: Metrics = request.app.state.metrics
    metrics.add("operations_accepted_total")


@router.post("/v1/earn", status_code=202, response_model=Accepted)
async def earn(request: Request, body: EarnCreate, who: PartnerCaller, idem: IdempotencyDep) -> JSONResponse:
    """Accepts a purchase durably; the points reach the chain in the next batch."""
    # The hot path of the network: on the event loop, from caches, waiting for the group
    # commit without a thread. Only a cache miss (a new member, a stale tier, a used-up
    # nonce block) goes to a worker thread, where the database or the chain is read.
    runtime = idem.runtime
    given = signed(body.partner_signature)
    self_signed = given is not None
    # A partner's own signature is checked against the chain (expired? nonce spent?) first.
    prepared = (
        None
        if self_signed
        else accept.prepare_earn_cached(runtime, caller=who, member_id=body.member_id, self_signed=self_signed)
    )
    if prepared is None:
        if given is None:  # a managed partner: loaded with the other misses of the moment
            misses: Coalesced[tuple[Caller, str, bool], accept.Prepared] = request.app.state.earn_misses
            prepared = await misses((who, body.member_id, False))
        else:
            prepared = await run_in_threadpool(
                accept.prepare_earn, runtime, caller=who, member_id=body.member_id, self_signed=True, signed=given
            )
    if body.campaign_id is not None:  # (r2) the campaign's terms, from the chain
        assert who.partner_id is not None
        found, clock = await run_in_threadpool(accept.read_campaign, runtime, who.partner_id, body.campaign_id)
        prepared = replace(prepared, campaign=found, clock=clock)
    response = await idem.run_async(
        who,
        body,
        lambda session: accept.accept_earn(
            runtime,
            session,
            caller=who,
            member_id=body.member_id,
            receipt_id=body.receipt_id,
            amount_minor=body.amount_minor,
            currency=body.currency,
            issued_at=body.issued_at,
            partner_signature=given,
            prepared=prepared,
            receipt_salt=body.receipt_salt,
        ),
        refuses_before_writing=True,
    )
    _accepted(request)
    return response


@router.post("/v1/redemptions", status_code=202, response_model=Accepted)
def redeem(request: Request, body: RedemptionCreate, who: PartnerCaller, idem: IdempotencyDep) -> JSONResponse:
    auth = body.authorization
    response = accept.redeem(
        idem.runtime,
        store=idem.store(who, body),
        caller=who,
        member_id=body.member_id,
        receipt_id=body.receipt_id,
        points=body.points,
        pin=auth.pin if isinstance(auth, PinAuthorization) else None,
        member_signature=signed(auth) if isinstance(auth, Signed) else None,
        issued_at=body.issued_at,
        receipt_salt=body.receipt_salt,
    )
    _accepted(request)
    return JSONResponse(response.body, status_code=response.status)


@router.post("/v1/reversals", status_code=202, response_model=Accepted)
def reverse(request: Request, body: ReversalCreate, who: PartnerCaller, idem: IdempotencyDep) -> JSONResponse:
    runtime = idem.runtime
    response = idem.run(
        who,
        body,
        lambda session: accept.accept_reversal(
            runtime,
            session,
            caller=who,
            receipt_id=body.receipt_id,
            refund_id=body.refund_id,
            points=body.points,
            amount_minor=body.amount_minor,
            reason=body.reason,
            partner_signature=signed(body.partner_signature),
            issued_at=body.issued_at,
            receipt_salt=body.receipt_salt,
        ),
    )
    _accepted(request)
    return response


@router.get("/v1/operations/{operation_id}", response_model=OperationView)
def get_operation(operation_id: str, who: AnyCaller, runtime: RuntimeDep) -> dict[str, Any]:
    with runtime.sessions() as session:
        return queries.get_operation(session, caller=who, operation_id=operation_id)
