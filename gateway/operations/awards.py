"""Accepting awards (r2): points a partner issues without a purchase, for a reason from SPEC's
fixed list, signed by the partner (by the gateway with a managed partner's key, or checked here
when the partner signed it with the SDK), drawn from its allowance on-chain.

`accept_award` takes an open session and writes nothing before its last check, so a batch
intake can accept many records in one transaction (it never commits)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.accounts.members import get_member
from gateway.accounts.partners import get_partner
from gateway.app.runtime import Runtime
from gateway.chain.ledger import AWARD_REASONS
from gateway.core.errors import ErrorCode, Invalid
from gateway.core.security import Caller
from gateway.db.models import Operation
from gateway.operations.freshness import check_fresh, check_issued_at, nonce_in_flight, read_fresh, salt_for
from gateway.operations.idempotency import Response
from gateway.operations.kinds import Kind
from gateway.operations.migration import check_not_migrating
from gateway.operations.signatures import SignedFields, now, sign_for_partner
from gateway.operations.store import check_duplicate, new_operation, store_accepted
from gateway.points.rules import MAX_OP_POINTS
from partners.signing import AwardMessage, Receipt

MAX_NOTE = 500


@dataclass(frozen=True)
class AwardRequest:
    """A validated award: the body of `POST /v1/awards` (or one record of a batch)."""

    member_id: str
    receipt_id: str
    points: int
    reason: str
    note: str | None = None
    partner_signature: SignedFields | None = None
    issued_at: str | None = None
    receipt_salt: str | None = None


def award_receipt(partner_id: int, request: AwardRequest, issued_at: str, salt: str) -> Receipt:
    """The award's canonical receipt document (the partner SDK builds the same one to sign)."""
    extra: dict[str, str] = {"reason": request.reason}
    if request.note is not None:
        extra["note"] = request.note
    return Receipt(
        kind=Kind.AWARD,
        partner_id=partner_id,
        receipt_id=request.receipt_id,
        member_id=request.member_id,
        points=request.points,
        issued_at=issued_at,
        extra=extra,
        salt=salt,
    )


def accept_award(runtime: Runtime, session: Session, *, caller: Caller, request: AwardRequest) -> Response:
    """Stores the award (in the caller's transaction) and returns its 202."""
    assert caller.partner_id is not None
    code = AWARD_REASONS.get(request.reason)
    if code is None:
        raise Invalid(
            f"reason must be one of {', '.join(AWARD_REASONS)}, not {request.reason!r}", code=ErrorCode.INVALID_REASON
        )
    if not 1 <= request.points <= MAX_OP_POINTS:
        raise Invalid(f"an award gives 1 to {MAX_OP_POINTS} points", code=ErrorCode.AMOUNT_OUT_OF_RANGE)
    if request.note is not None and len(request.note) > MAX_NOTE:
        raise Invalid(f"the note is longer than {MAX_NOTE} characters", code=ErrorCode.VALIDATION_ERROR)
    given = request.partner_signature
    # A managed partner's nonce comes from its row, locked in this transaction.
    partner = get_partner(session, caller.partner_id, for_update=given is None)
    member = get_member(session, request.member_id)
    check_not_migrating(session, member.member_id)
    check_duplicate(session, partner.id, Kind.AWARD, request.receipt_id)
    check_issued_at(runtime, request.issued_at)
    if given is not None:  # awards are rare beside earns: the chain is read inside the transaction
        fresh = read_fresh(runtime, "partnerNonceUsed", partner.id, given.nonce)
        check_fresh(fresh, given, nonce_in_flight(session, nonce=given.nonce, partner_id=partner.id))
    receipt = award_receipt(
        partner.id, request, request.issued_at or now().isoformat(), salt_for(request.receipt_salt, given)
    )
    nonce, deadline, signature = sign_for_partner(
        runtime,
        partner,
        given,
        request.issued_at,
        lambda n, d: AwardMessage(partner.id, member.address, request.points, code, receipt.ref(), n, d),
    )
    op = new_operation(
        kind=Kind.AWARD,
        partner_id=partner.id,
        member_id=member.member_id,
        receipt_id=request.receipt_id,
        receipt=receipt,
        points=request.points,
        nonce=Decimal(nonce),
        deadline=deadline,
        signature=signature,
        reason=request.reason,
        member_address=member.address,
    )
    return store_accepted(session, op, reason=request.reason)


def issue_of(session: Session, partner_id: int, receipt_id: str) -> Operation | None:
    """The partner's earn for `receipt_id`, else its award for it: what a reversal takes back."""
    for kind in (Kind.EARN, Kind.AWARD):
        found = session.scalar(
            select(Operation).where(
                Operation.partner_id == partner_id, Operation.kind == kind, Operation.receipt_id == receipt_id
            )
        )
        if found is not None:
            return found
    return None
