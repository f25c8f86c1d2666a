"""Reading operations back: one operation, a member's activity."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gateway.accounts.members import get_member
from gateway.chain.ledger import RedemptionRecord
from gateway.core.errors import ErrorCode, NotFound
from gateway.core.security import Caller
from gateway.db.models import Batch, Operation
from gateway.operations.kinds import IN_FLIGHT, Kind, Status
from gateway.operations.store import proof_from_column


def operation_view(op: Operation) -> dict[str, Any]:
    return {
        "operation_id": op.id,
        "kind": op.kind,
        "status": op.status,
        "partner_id": op.partner_id,
        "member_id": op.member_id,
        "receipt_id": op.receipt_id,
        "receipt_ref": op.receipt_ref,
        "points": op.points,
        "amount_minor": op.amount_minor,
        "currency": op.currency,
        "tx_hash": op.tx_hash,
        "block_number": op.block_number,
        "block_hash": op.block_hash,
        "log_index": op.log_index,
        # A confirmed earn's month is part of its on-chain leaf: a self-custody partner
        # needs it to sign a reversal of that earn.
        "earn_month": op.earn_month,
        "error": {"code": op.error_code, "message": op.error_message} if op.error_code else None,
        "accepted_at": op.created_at.isoformat(),
        "reason": op.reason,
        "member_address": op.member_address,
        **_r2_fields(op),
        **_campaign_fields(op),
    }


def _campaign_fields(op: Operation) -> dict[str, Any]:
    """(r2) An earn naming a campaign: the campaign and its bonus (in `points`): the estimate
    until confirmed, then the `Earned` event's."""
    return {"campaign_id": op.campaign_id, "bonus": op.bonus} if op.campaign_id is not None else {}


def _r2_fields(op: Operation) -> dict[str, Any]:
    """(r2) A reversal's points taken and debt; the debt a confirmed earn, award or refund
    repaid; a confirmed redemption's on-chain commitment,
    which a self-custody partner's refund signature covers (the SDK recomputes its leaf)."""
    if op.kind == Kind.REVERSAL:
        confirmed = op.status == Status.CONFIRMED
        # `points` is the whole reversal; what the holder lacked became its debt (`DebtRecorded`,
        # read by submitter/receipts.py), the rest was taken from its balance.
        debt = int(op.debt or 0)
        return {
            "points_taken": int(op.points or 0) - debt if confirmed else None,
            "debt": debt if confirmed else None,
        }
    if op.kind in (Kind.EARN, Kind.AWARD, Kind.REFUND) and op.status == Status.CONFIRMED:
        # (r2) `points` is all it issued (or gave back); `debt_repaid` of them paid the member's
        # debt first, the rest reached its balance.
        return {"debt_repaid": int(op.debt or 0)}
    if op.kind == Kind.REDEMPTION and op.commit_index is not None and op.member_address and op.earn_batch_id:
        record = RedemptionRecord(
            int(op.earn_batch_id),
            int(op.commit_index),
            op.partner_id,
            op.member_address,
            bytes.fromhex(op.receipt_ref[2:]),
            int(op.points or 0),
            int(op.earn_month or 0),
            proof_from_column(op.earn_proof),
        )
        return {
            "earn_month": None,  # for a redemption that column holds the latest expiry month it burnt
            "redemption": {
                "batch_id": record.batch_id,
                "index": record.index,
                "expiry_month": record.expiry_month,
                "proof": ["0x" + p.hex() for p in record.proof],
                "leaf": "0x" + record.leaf().hex(),
            },
        }
    return {}


def get_operation(session: Session, *, caller: Caller, operation_id: str) -> dict[str, Any]:
    op = session.scalar(select(Operation).where(Operation.id == operation_id))
    # A partner sees only its own operations: another partner's id answers like a missing one.
    if op is None or (caller.role == "partner" and op.partner_id != caller.partner_id):
        raise NotFound(f"no operation {operation_id}", code=ErrorCode.UNKNOWN_OPERATION)
    return operation_view(op)


def member_activity(
    session: Session, *, caller: Caller, member_id: str, cursor: int | None, limit: int
) -> dict[str, Any]:
    get_member(session, member_id)
    query = select(Operation).where(Operation.member_id == member_id)
    if caller.role == "partner":
        # `+ 0`: a filter, not an index choice. A member's operations are few beside a
        # partner's, but SQLite, which keeps no statistics, would walk the partner's index.
        query = query.where(Operation.partner_id + 0 == caller.partner_id)
    if cursor is not None:
        query = query.where(Operation.seq < cursor)
    rows = list(session.scalars(query.order_by(Operation.seq.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return {"items": [operation_view(r) for r in rows], "next_cursor": rows[-1].seq if more and rows else None}


def queue_depth(session: Session) -> int:
    """Operations on their way to the chain (accepted or submitted)."""
    return int(session.scalar(select(func.count()).select_from(Operation).where(Operation.status.in_(IN_FLIGHT))) or 0)


def count_by_status(session: Session) -> dict[str, int]:
    rows = session.execute(select(Operation.status, func.count()).group_by(Operation.status)).all()
    return {status: int(n) for status, n in rows}


def batch_totals(session: Session) -> tuple[int, int]:
    """(batches, operations in them), from the batches themselves."""
    count, total = session.execute(select(func.count(), func.coalesce(func.sum(Batch.size), 0))).one()
    return int(count), int(total)
