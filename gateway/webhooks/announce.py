"""Announcing operations' outcomes: `operation.confirmed` and `operation.rejected` for the
operations of a batch, raised in the submitter's own transaction (the one that records the
outcome), so an outcome is announced exactly when it is committed. One query when nobody
subscribes, a handful per batch otherwise; a re-confirmation after a reorg announces nothing
twice (the event's dedupe key is the operation and its outcome).

(r2) A confirmed reversal that left debt also raises `member.debt_recorded`, in the same
transaction, for the partner whose member it is (the one that enrolled it; the reversing
partner has its `operation.confirmed`, with `points_taken` and `debt` on the operation)."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.db.models import Member, Operation
from gateway.webhooks.models import Webhook
from gateway.webhooks.store import publish_many

OUTCOMES = {"confirmed": "operation.confirmed", "rejected": "operation.rejected"}
DEBT_RECORDED = "member.debt_recorded"


def _anyone_listening(session: Session) -> bool:
    for events in session.scalars(select(Webhook.events).where(Webhook.active)):
        kinds = json.loads(events)
        if "*" in kinds or DEBT_RECORDED in kinds or any(k in kinds for k in OUTCOMES.values()):
            return True
    return False


def announce_batch(session: Session, batch_id: int) -> int:
    """Raises the outcome events of the batch's final operations; returns how many were new."""
    if not _anyone_listening(session):
        return 0
    rows = session.execute(
        select(Operation).where(Operation.batch_id == batch_id, Operation.status.in_(tuple(OUTCOMES)))
    ).scalars()
    events: list[tuple[str, dict[str, Any], int | None, str]] = []
    for op in rows:
        data = {
            "operation_id": op.id,
            "kind": op.kind,
            "partner_id": op.partner_id,
            "member_id": op.member_id,
            "receipt_id": op.receipt_id,
            "receipt_ref": op.receipt_ref,
            "status": op.status,
            "points": op.points,
            "tx_hash": op.tx_hash,
            "block_number": op.block_number,
            "log_index": op.log_index,
            "error": {"code": op.error_code, "message": op.error_message} if op.error_code else None,
        }
        events.append((OUTCOMES[op.status], data, op.partner_id, f"{OUTCOMES[op.status]}:{op.id}"))
        if op.status == "confirmed" and op.kind == "reversal" and op.debt:
            events.append(_debt_recorded(session, op))
    return publish_many(session, events)


def _debt_recorded(session: Session, op: Operation) -> tuple[str, dict[str, Any], int | None, str]:
    """(r2) The member's debt notice: to the partner that enrolled it (None: the operator's hooks)."""
    enrolled_by = session.scalar(select(Member.enrolled_by).where(Member.member_id == op.member_id))
    data = {
        "member_id": op.member_id,
        "points": int(op.debt or 0),
        "partner_id": op.partner_id,  # the partner whose reversal left the debt
        "operation_id": op.id,
        "receipt_ref": op.receipt_ref,
        "block_number": op.block_number,
    }
    return DEBT_RECORDED, data, enrolled_by, f"{DEBT_RECORDED}:{op.id}"
