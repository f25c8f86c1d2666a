"""A submitted batch read back, line by line: each accepted record's operation and how far it
got (accepted, submitted, confirmed or rejected with its error), and the refused records."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gateway.core.errors import ErrorCode, NotFound
from gateway.core.security import Caller
from gateway.db.models import Operation
from gateway.operations.batch_models import IntakeBatch, IntakeRecord
from gateway.operations.kinds import Status

REFUSED = "refused"  # a line's status in the listing when the batch refused it
LINE_STATUSES = (*(s.value for s in Status), REFUSED)


def batch_status(
    session: Session, *, caller: Caller, batch_id: str, cursor: int | None, limit: int, status: str | None
) -> dict[str, Any]:
    """The batch, its counts by status, and up to `limit` lines after line `cursor` (of one
    `status` when given), in line order; `next_cursor` is the last line given when more follow."""
    batch = session.get(IntakeBatch, batch_id)
    # Another partner's batch answers like a missing one.
    if batch is None or (caller.role == "partner" and batch.partner_id != caller.partner_id):
        raise NotFound(f"no batch {batch_id}", code=ErrorCode.UNKNOWN_BATCH)
    refused: list[dict[str, Any]] = json.loads(batch.refused)
    counts = {s.value: 0 for s in Status}
    joined = select(IntakeRecord.line).join(Operation, Operation.id == IntakeRecord.operation_id, isouter=True)
    for state, n in session.execute(
        select(Operation.status, func.count())
        .select_from(IntakeRecord)
        .join(Operation, Operation.id == IntakeRecord.operation_id)
        .where(IntakeRecord.batch_id == batch_id)
        .group_by(Operation.status)
    ):
        counts[str(state)] = int(n)
    counts[REFUSED] = len(refused)
    after = cursor or 0
    items: list[dict[str, Any]] = []
    if status != REFUSED:
        query = (
            joined.add_columns(
                IntakeRecord.kind,
                IntakeRecord.receipt_id,
                IntakeRecord.operation_id,
                Operation.status,
                Operation.points,
                Operation.tx_hash,
                Operation.block_number,
                Operation.log_index,
                Operation.error_code,
                Operation.error_message,
            )
            .where(IntakeRecord.batch_id == batch_id, IntakeRecord.line > after)
            .order_by(IntakeRecord.line)
            .limit(limit + 1)
        )
        if status is not None:
            query = query.where(Operation.status == status)
        for row in session.execute(query):
            items.append(
                {
                    "line": row.line,
                    "kind": row.kind,
                    "receipt_id": row.receipt_id,
                    "status": row.status,
                    "operation_id": row.operation_id,
                    "points": row.points,
                    "tx_hash": row.tx_hash,
                    "block_number": row.block_number,
                    "log_index": row.log_index,
                    "error": {"code": row.error_code, "message": row.error_message} if row.error_code else None,
                }
            )
    if status in (None, REFUSED):
        for refusal in refused:
            if refusal["line"] > after:
                items.append(
                    {
                        "line": refusal["line"],
                        "receipt_id": refusal.get("receipt_id"),
                        "status": REFUSED,
                        "error": {"code": refusal["code"], "message": refusal["message"]},
                    }
                )
        items.sort(key=lambda item: int(item["line"]))
    more = len(items) > limit
    items = items[:limit]
    in_flight = counts[Status.ACCEPTED] + counts[Status.SUBMITTED]
    return {
        "batch_id": batch.id,
        "partner_id": batch.partner_id,
        "content_type": batch.content_type,
        "submitted_at": batch.created_at.isoformat(),
        "records": batch.records,
        "accepted": batch.accepted,
        "counts": counts,
        "done": in_flight == 0,
        "items": items,
        "next_cursor": items[-1]["line"] if more and items else None,
    }
