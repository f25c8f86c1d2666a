"""Accepting refunds of redemptions (r2): the partner at which points were redeemed gives some
or all of them back when the goods are returned, never more than the redemption burnt minus
what was already refunded (checked here against the index; the contract checks it again
against its own count and is the final word).

A refund proves its redemption against the Merkle root the redemption's batch committed: the
redemption's record (batch, place, member address, points, latest expiry month, proof) is
stored when it is confirmed (submitter/receipts.py), and the partner signs the refund over its
leaf. `accept_refund` takes an open session and never commits, so a batch intake can accept
many records in one transaction."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gateway.accounts.partners import get_partner
from gateway.app.runtime import Runtime
from gateway.chain.ledger import RedemptionRecord
from gateway.core.errors import Conflict, ErrorCode, Invalid, NotFound
from gateway.core.security import Caller
from gateway.db.models import Member, Operation
from gateway.operations.freshness import check_fresh, check_issued_at, nonce_in_flight, read_fresh, salt_for
from gateway.operations.idempotency import Response
from gateway.operations.kinds import Kind, Status
from gateway.operations.signatures import SignedFields, now, sign_for_partner
from gateway.operations.store import check_duplicate, new_operation, proof_from_column, store_accepted
from gateway.points.rules import MAX_OP_POINTS
from partners.signing import Receipt, RefundMessage


@dataclass(frozen=True)
class RefundRequest:
    """A validated refund: the body of `POST /v1/refunds` (or one record of a batch)."""

    redemption_receipt_id: str
    receipt_id: str
    points: int
    reason: str
    partner_signature: SignedFields | None = None
    issued_at: str | None = None
    receipt_salt: str | None = None


def redemption_record(session: Session, redemption: Operation) -> RedemptionRecord:
    """A confirmed redemption as its batch committed it on-chain (what a refund proves)."""
    assert redemption.earn_batch_id is not None and redemption.commit_index is not None
    address = redemption.member_address or session.scalar(
        select(Member.address).where(Member.member_id == redemption.member_id)
    )
    return RedemptionRecord(
        int(redemption.earn_batch_id),
        int(redemption.commit_index),
        redemption.partner_id,
        str(address),
        bytes.fromhex(redemption.receipt_ref[2:]),
        int(redemption.points or 0),
        int(redemption.earn_month or 0),
        proof_from_column(redemption.earn_proof),
    )


def refund_receipt(partner_id: int, member_id: str, request: RefundRequest, issued_at: str, salt: str) -> Receipt:
    """The refund's canonical receipt document (the partner SDK builds the same one to sign)."""
    return Receipt(
        kind=Kind.REFUND,
        partner_id=partner_id,
        receipt_id=request.receipt_id,
        member_id=member_id,
        points=request.points,
        issued_at=issued_at,
        extra={"redemption_receipt_id": request.redemption_receipt_id, "reason": request.reason},
        salt=salt,
    )


def refundable(session: Session, redemption: Operation) -> int:
    """Points of the redemption not refunded yet (refunds on their way included)."""
    already = session.scalar(
        select(func.coalesce(func.sum(Operation.points), 0)).where(
            Operation.original_id == redemption.id, Operation.kind == Kind.REFUND, Operation.status != Status.REJECTED
        )
    )
    return int(redemption.points or 0) - int(already or 0)


def accept_refund(runtime: Runtime, session: Session, *, caller: Caller, request: RefundRequest) -> Response:
    """Stores the refund (in the caller's transaction) and returns its 202."""
    assert caller.partner_id is not None
    if not 1 <= request.points <= MAX_OP_POINTS:
        raise Invalid(f"a refund gives back 1 to {MAX_OP_POINTS} points", code=ErrorCode.AMOUNT_OUT_OF_RANGE)
    given = request.partner_signature
    partner = get_partner(session, caller.partner_id, for_update=given is None)
    # Only the partner the points were redeemed at: another partner's redemption is not found.
    redemption = session.scalar(
        select(Operation).where(
            Operation.partner_id == partner.id,
            Operation.kind == Kind.REDEMPTION,
            Operation.receipt_id == request.redemption_receipt_id,
        )
    )
    if redemption is None:
        raise NotFound(
            f"no redemption for receipt {request.redemption_receipt_id} at this partner",
            code=ErrorCode.UNKNOWN_REDEMPTION,
        )
    if redemption.status != Status.CONFIRMED or redemption.earn_batch_id is None or redemption.commit_index is None:
        raise Conflict(
            f"the redemption for receipt {request.redemption_receipt_id} is {redemption.status}, not confirmed yet",
            code=ErrorCode.REDEMPTION_NOT_CONFIRMED,
            operation_id=redemption.id,
        )
    remaining = refundable(session, redemption)
    if request.points > remaining:
        raise Invalid(
            f"the redemption burnt {redemption.points} points and {int(redemption.points or 0) - remaining} "
            f"are already refunded: at most {remaining} more",
            code=ErrorCode.REFUND_EXCEEDS_REDEMPTION,
            remaining=remaining,
        )
    check_duplicate(session, partner.id, Kind.REFUND, request.receipt_id)
    check_issued_at(runtime, request.issued_at)
    if given is not None:  # refunds are rare: the chain is read inside the transaction
        fresh = read_fresh(runtime, "partnerNonceUsed", partner.id, given.nonce)
        check_fresh(fresh, given, nonce_in_flight(session, nonce=given.nonce, partner_id=partner.id))
    receipt = refund_receipt(
        partner.id,
        redemption.member_id,
        request,
        request.issued_at or now().isoformat(),
        salt_for(request.receipt_salt, given),
    )
    record = redemption_record(session, redemption)
    leaf = record.leaf()
    nonce, deadline, signature = sign_for_partner(
        runtime,
        partner,
        given,
        request.issued_at,
        lambda n, d: RefundMessage(partner.id, leaf, request.points, receipt.ref(), n, d),
    )
    op = new_operation(
        kind=Kind.REFUND,
        partner_id=partner.id,
        member_id=redemption.member_id,
        receipt_id=request.receipt_id,
        receipt=receipt,
        points=request.points,
        nonce=Decimal(nonce),
        deadline=deadline,
        signature=signature,
        original_id=redemption.id,
        reason=request.reason,
        member_address=record.member,
    )
    return store_accepted(session, op, redemption_leaf="0x" + leaf.hex())
