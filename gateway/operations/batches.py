"""Batch intake (SPEC section 6, r2): up to MAX_RECORDS records of several kinds, each checked
on its own; the accepted ones stored in one transaction, with their batch.

Every kind goes through its entry of `INTAKE`: `prepare` (optional) does the work of all of
that kind's records together before the transaction (one query for the members, one chain
call for their tiers, one reservation of nonces, the signatures), and `accept` takes the
open Session and one record, as the single-operation endpoint's acceptance does, and raises
a domain error (the record's refusal) or returns its 202. A kind whose `accept` may raise
after writing runs each record in a savepoint (`bare=False`). Rows are left to one
executemany at the end (`gateway.db.writer.Group`).

Per-record idempotency is by receipt id (per kind, as for single operations): a receipt id
already used, by a single operation, an earlier batch or an earlier line of this batch, is
refused `duplicate_receipt`. The duplicates are read once before the work and once more in
the transaction; a concurrent writer that wins a race in between fails the insert, and the
whole batch is tried again (the second read then sees the winner).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gateway.app.runtime import Runtime
from gateway.core.errors import ErrorCode, LoyaltyError
from gateway.core.security import Caller
from gateway.db.models import Base, utcnow
from gateway.db.writer import GROUP, Group
from gateway.operations import batch_earns
from gateway.operations.accept import accept_reversal
from gateway.operations.awards import AwardRequest, accept_award
from gateway.operations.batch_models import IntakeBatch
from gateway.operations.batch_records import BATCH_KINDS, MAX_RECORDS, KindIntake, Record, Refusal, receipt_id_of
from gateway.operations.idempotency import Response, idempotent, stored_response
from gateway.operations.kinds import Kind
from gateway.operations.refunds import RefundRequest, accept_refund

__all__ = ["BATCH_KINDS", "INTAKE", "MAX_RECORDS", "KindIntake", "Record", "Refusal", "accept_batch"]

RACE_ATTEMPTS = 3
_CHUNK = 5_000  # values in one IN (...) list

# ---------------------------------------------------------------- reversals, awards, refunds


def _accept_reversal(runtime: Runtime, session: Session, caller: Caller, record: Record, _ready: Any) -> Response:
    return accept_reversal(runtime, session, caller=caller, **record.fields)


def _reversal_key(fields: dict[str, Any]) -> str:
    return str(fields.get("refund_id") or fields["receipt_id"])


def _accept_award(runtime: Runtime, session: Session, caller: Caller, record: Record, _ready: Any) -> Response:
    return accept_award(runtime, session, caller=caller, request=AwardRequest(**record.fields))


def _accept_refund(runtime: Runtime, session: Session, caller: Caller, record: Record, _ready: Any) -> Response:
    return accept_refund(runtime, session, caller=caller, request=RefundRequest(**record.fields))


# The dispatch table: one entry per kind that batches accept. A reversal or a refund reads the
# rows of the same batch before it (what is already taken back), so it is not `bare`.
INTAKE: dict[str, KindIntake] = {
    Kind.EARN: KindIntake(accept=batch_earns.accept_earn, prepare=batch_earns.prepare_earns, bare=True),
    Kind.AWARD: KindIntake(accept=_accept_award, bare=True),  # writes nothing before its last check
    Kind.REVERSAL: KindIntake(accept=_accept_reversal, receipt_key=_reversal_key),
    Kind.REFUND: KindIntake(accept=_accept_refund),
}


# ---------------------------------------------------------------- the batch


@dataclass
class _Outcome:
    refused: dict[int, Refusal] = field(default_factory=dict)
    accepted: list[tuple[Record, str]] = field(default_factory=list)  # (record, operation id)


def accept_batch(
    runtime: Runtime,
    *,
    caller: Caller,
    scope: str,
    idempotency_key: str | None,
    request: dict[str, Any],
    content_type: str,
    records: list[Record],
    refused: list[Refusal],
) -> Response:
    """Accepts a batch's valid records in one transaction; 202 `{batch_id, records, accepted,
    refused}`. `refused`: the records the edge could not read or validate. `request`: what
    identifies the body for the Idempotency-Key (its digest)."""
    assert caller.partner_id is not None
    stored = stored_response(runtime, scope=scope, key=idempotency_key, body=request)
    if stored is not None:
        return stored
    before = _Outcome(refused={r.line: r for r in refused})
    pending: list[Record] = []
    seen: set[tuple[str, str]] = set()
    for record in records:
        intake = INTAKE.get(record.kind)
        if intake is None:
            before.refused[record.line] = Refusal(
                record.line,
                ErrorCode.KIND_NOT_SUPPORTED,
                f"this gateway does not accept {record.kind} records in batches yet",
                receipt_id_of(record.fields),
            )
            continue
        key = (record.kind, intake.receipt_key(record.fields))
        if key in seen:
            before.refused[record.line] = Refusal(
                record.line,
                ErrorCode.DUPLICATE_RECEIPT,
                f"receipt {key[1]} already has a {record.kind} on an earlier line of this batch",
                receipt_id_of(record.fields),
            )
            continue
        seen.add(key)
        pending.append(record)
    # Receipts already used, read before the costly preparation (and again in the transaction).
    with runtime.sessions() as session:
        taken = _taken(session.connection(), caller.partner_id, pending)
    pending = [r for r in pending if not _refuse_taken(before, r, taken)]
    prepared: dict[int, Any] = {}
    for kind, group in _by_kind(pending).items():
        intake = INTAKE[kind]
        if intake.prepare is None:
            continue
        for record, result in zip(group, intake.prepare(runtime, caller, group), strict=True):
            if isinstance(result, LoyaltyError):
                before.refused[record.line] = Refusal.of(record, result)
            else:
                prepared[record.line] = result
    pending = [r for r in pending if r.line not in before.refused]
    batch_id = secrets.token_hex(16)
    total = len(records) + len(refused)

    def effect(session: Session) -> Response:
        outcome = _Outcome(refused=dict(before.refused))
        _store_records(runtime, session, caller, pending, prepared, outcome)
        refusals = [outcome.refused[line].as_json() for line in sorted(outcome.refused)]
        connection = session.connection()
        connection.execute(
            insert(_BATCHES),
            {
                "id": batch_id,
                "partner_id": caller.partner_id,
                "content_type": content_type,
                "records": total,
                "accepted": len(outcome.accepted),
                "refused": json.dumps(refusals),
                "created_at": utcnow(),
            },
        )
        if outcome.accepted:
            # Plain values (no type to adapt): the driver's own executemany, without the
            # per-row parameter building of a Core insert.
            mark = "?" if connection.dialect.paramstyle == "qmark" else "%s"
            connection.exec_driver_sql(
                f"INSERT INTO intake_records (batch_id, line, kind, receipt_id, operation_id) "
                f"VALUES ({', '.join([mark] * 5)})",
                [
                    (batch_id, record.line, record.kind, INTAKE[record.kind].receipt_key(record.fields), operation_id)
                    for record, operation_id in outcome.accepted
                ],
            )
        body = {"batch_id": batch_id, "records": total, "accepted": len(outcome.accepted), "refused": refusals}
        return Response(202, body)

    for attempt in range(1, RACE_ATTEMPTS + 1):
        try:
            return idempotent(runtime, scope=scope, key=idempotency_key, body=request, effect=effect)
        except IntegrityError:  # a concurrent write took a receipt id first: read them again
            if attempt == RACE_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


def _store_records(
    runtime: Runtime,
    session: Session,
    caller: Caller,
    records: list[Record],
    prepared: dict[int, Any],
    outcome: _Outcome,
) -> None:
    """Each record through its kind's `accept`, in the caller's transaction; the rows are
    written together at the end."""
    assert caller.partner_id is not None
    taken = _taken(session.connection(), caller.partner_id, records)
    outer = session.info.get(GROUP)
    group = session.info[GROUP] = Group()
    try:
        for record in records:
            if _refuse_taken(outcome, record, taken):
                continue
            intake = INTAKE[record.kind]
            try:
                if intake.bare:
                    response = intake.accept(runtime, session, caller, record, prepared.get(record.line))
                else:
                    group.flush(session)  # a careful record sees every row before it (a reversal: the others')
                    with session.begin_nested():
                        response = intake.accept(runtime, session, caller, record, prepared.get(record.line))
            except LoyaltyError as exc:
                outcome.refused[record.line] = Refusal.of(record, exc)
                continue
            outcome.accepted.append((record, str(response.body["operation_id"])))
        group.flush(session)
    finally:
        session.info[GROUP] = outer


def _by_kind(records: Iterable[Record]) -> dict[str, list[Record]]:
    kinds: dict[str, list[Record]] = {}
    for record in records:
        kinds.setdefault(record.kind, []).append(record)
    return kinds


def _taken(connection: Connection, partner_id: int, records: list[Record]) -> set[tuple[str, str]]:
    """(kind, receipt id) of this partner's operations among these records' receipt ids: per
    kind, so that the lookup walks the unique index (partner, kind, receipt id)."""
    taken: set[tuple[str, str]] = set()
    for kind, group in _by_kind(records).items():
        keys = sorted({INTAKE[kind].receipt_key(r.fields) for r in group})
        for first in range(0, len(keys), _CHUNK):
            rows = connection.execute(
                select(_OPERATIONS.c.receipt_id).where(
                    _OPERATIONS.c.partner_id == partner_id,
                    _OPERATIONS.c.kind == kind,
                    _OPERATIONS.c.receipt_id.in_(keys[first : first + _CHUNK]),
                )
            )
            taken.update((kind, str(receipt_id)) for (receipt_id,) in rows)
    return taken


def _refuse_taken(outcome: _Outcome, record: Record, taken: set[tuple[str, str]]) -> bool:
    key = INTAKE[record.kind].receipt_key(record.fields)
    if (record.kind, key) not in taken:
        return False
    outcome.refused[record.line] = Refusal(
        record.line,
        ErrorCode.DUPLICATE_RECEIPT,
        f"receipt {key} already has a {record.kind} (a single operation or an earlier batch)",
        receipt_id_of(record.fields),
    )
    return True


_OPERATIONS = Base.metadata.tables["operations"]
_BATCHES = Base.metadata.tables[IntakeBatch.__tablename__]
