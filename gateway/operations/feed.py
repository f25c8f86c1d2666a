"""The reconciliation feed (SPEC section 6, r2): a partner's operations in acceptance order,
each with its receipt hash and on-chain position, filtered and cursor-paginated, as JSON rows
or CSV. A partner reads its own; auditors and the operator read anyone's."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, literal_column, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from gateway.core.errors import ErrorCode, Forbidden, Invalid, NotFound
from gateway.core.security import Caller
from gateway.db.models import Operation, Partner, UTCDateTime
from gateway.operations.kinds import Kind, Status
from gateway.operations.queries import operation_view

MAX_LIMIT = 1000
# How far acceptance times may run out of acceptance order (seq): an operation's time is taken
# just before its row is inserted (gateway/operations/store.py), so two operations invert only by
# the milliseconds of a group commit or a write queue; ten minutes is far more than that.
INVERSION_BOUND = timedelta(minutes=10)
MAX_CURSOR = 2**63 - 1  # an operation's seq is a BIGINT: anything larger cannot be one
COLUMNS = (
    "operation_id",
    "kind",
    "status",
    "receipt_id",
    "member_id",
    "points",
    "amount_minor",
    "currency",
    "receipt_ref",
    "tx_hash",
    "block_number",
    "log_index",
    "accepted_at",
    "error_code",
)


def check_reader(caller: Caller, partner_id: int) -> None:
    if caller.role == "partner" and caller.partner_id != partner_id:
        raise Forbidden("a partner reads its own operations and statement only", code=ErrorCode.FORBIDDEN)


def partner_operations(
    session: Session,
    *,
    caller: Caller,
    partner_id: int,
    accepted_from: datetime | None,
    accepted_to: datetime | None,
    kind: str | None,
    status: str | None,
    cursor: int | None,
    limit: int,
) -> dict[str, Any]:
    """`{items, next_cursor}`, oldest first from the cursor on: a partner's books are kept
    forward, and a row once read never moves (new operations only ever come after it)."""
    check_reader(caller, partner_id)
    if session.get(Partner, partner_id) is None:
        raise NotFound(f"no partner {partner_id}", code=ErrorCode.UNKNOWN_PARTNER)
    if kind is not None and kind not in {k.value for k in Kind}:
        raise Invalid(f"kind must be one of {', '.join(k.value for k in Kind)}", code=ErrorCode.VALIDATION_ERROR)
    if status is not None and status not in {s.value for s in Status}:
        raise Invalid(f"status must be one of {', '.join(s.value for s in Status)}", code=ErrorCode.VALIDATION_ERROR)
    query = select(Operation).where(Operation.partner_id == partner_id)
    sqlite = session.get_bind().dialect.name == "sqlite"
    # SQLite's planner, given a date range, walks (partner_id, created_at) and sorts what it found
    # by seq (43 ms p99 with a million operations); bounded by seqs instead, it walks
    # (partner_id, seq) in order and stops at the page's end. `+created_at` (unary plus, a no-op
    # SQLite documents as the way to keep a term off the indexes) leaves the date as a filter only.
    # PostgreSQL plans the dated reads well with the floor alone (docs/benchmarks.md).
    accepted: ColumnElement[datetime] | InstrumentedAttribute[datetime] = (
        literal_column("+operations.created_at", type_=UTCDateTime()) if sqlite else Operation.created_at
    )
    if accepted_from is not None:
        floor = seq_floor(session, partner_id, accepted_from)
        if floor is None:  # nothing accepted since
            return {"items": [], "next_cursor": None}
        # The same rows, found from where they start: without the floor, a date with no end makes
        # the planner walk the feed in seq order from the partner's first operation.
        query = query.where(Operation.seq >= floor, accepted >= accepted_from)
    if accepted_to is not None:
        if sqlite:
            ceiling = seq_ceiling(session, partner_id, accepted_to)
            if ceiling is None:  # nothing accepted before
                return {"items": [], "next_cursor": None}
            query = query.where(Operation.seq <= ceiling)
        query = query.where(accepted < accepted_to)
    if kind is not None:
        query = query.where(Operation.kind == kind)
    if status is not None:
        query = query.where(Operation.status == status)
    if cursor is not None:
        query = query.where(Operation.seq > cursor)
    rows = list(session.scalars(query.order_by(Operation.seq).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return {"items": [operation_view(op) for op in rows], "next_cursor": str(rows[-1].seq) if more else None}


def seq_floor(session: Session, partner_id: int, accepted_from: datetime) -> int | None:
    """A seq below which no operation of the partner accepted at or after `accepted_from` lies:
    the least seq among those accepted within INVERSION_BOUND of the first such one (two
    look-ups along `ix_operations_partner_created`); None when there is none."""
    mine = Operation.partner_id == partner_id
    # ORDER BY ... LIMIT 1, not min(): SQLite answers min() over a range by reading the whole
    # range (a partner's half year: 50 ms), the ordered index read stops at the first row.
    after = select(Operation.created_at).where(mine, Operation.created_at >= accepted_from)
    first = session.scalar(after.order_by(Operation.created_at).limit(1))
    if first is None:
        return None
    window = (Operation.created_at >= first, Operation.created_at < first + INVERSION_BOUND)
    # `seq + 0`: min(seq) would let SQLite walk (partner_id, seq) from the partner's first
    # operation to the window (50 ms for half a year of a large partner); over an expression it
    # reads the window's few rows along (partner_id, created_at, seq) instead.
    return session.scalar(select(func.min(Operation.seq + 0)).where(mine, *window))


def seq_ceiling(session: Session, partner_id: int, accepted_to: datetime) -> int | None:
    """A seq above which no operation of the partner accepted before `accepted_to` lies: the
    greatest seq among those accepted within INVERSION_BOUND of the last such one (the mirror of
    `seq_floor`); None when there is none."""
    mine = Operation.partner_id == partner_id
    before = select(Operation.created_at).where(mine, Operation.created_at < accepted_to)
    last = session.scalar(before.order_by(Operation.created_at.desc()).limit(1))
    if last is None:
        return None
    window = (Operation.created_at >= last - INVERSION_BOUND, Operation.created_at <= last)
    return session.scalar(select(func.max(Operation.seq + 0)).where(mine, *window))  # + 0: see seq_floor


def parse_cursor(text: str | None) -> int | None:
    if text is None or text == "":
        return None
    if not text.isdigit() or int(text) > MAX_CURSOR:
        raise Invalid("cursor is the next_cursor of an earlier page", code=ErrorCode.VALIDATION_ERROR)
    return int(text)


def as_csv(page: dict[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for item in page["items"]:
        error = item.get("error") or {}
        row = {**item, "error_code": error.get("code")}
        writer.writerow(["" if row.get(c) is None else row[c] for c in COLUMNS])
    return out.getvalue()
