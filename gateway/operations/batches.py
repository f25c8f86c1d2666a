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
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gateway.app.runtime import Runtime
from gateway.core.errors import Conflict, ErrorCode, LoyaltyError, NotFound
from gateway.core.security import Caller
from gateway.db.models import Base, Partner, utcnow
from gateway.db.writer import GROUP, Group
from gateway.operations.accept import Prepared, accept_reversal, check_currency, earn_operation
from gateway.operations.batch_models import IntakeBatch
from gateway.operations.freshness import Fresh, check_fresh, nonce_in_flight
from gateway.operations.idempotency import Response, idempotent, stored_response
from gateway.operations.kinds import Kind
from gateway.operations.signatures import SignedFields
from gateway.operations.store import store_accepted

MAX_RECORDS = 10_000
# What a record may name as its kind (SPEC); those without an entry in INTAKE are refused
# `kind_not_supported`, record by record.
BATCH_KINDS = ("earn", "award", "reversal", "refund")
RACE_ATTEMPTS = 3
_CHUNK = 5_000  # values in one IN (...) list
SIGNING_THREADS = 2


@dataclass(frozen=True)
class Record:
    """One record of a batch: its line in the file (from 1), its kind, and the body of the
    single-operation endpoint, validated (a signature as SignedFields)."""

    line: int
    kind: str
    fields: dict[str, Any]


@dataclass(frozen=True)
class Refusal:
    line: int
    code: str
    message: str
    receipt_id: str | None = None

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"line": self.line, "code": self.code, "message": self.message}
        if self.receipt_id is not None:
            body["receipt_id"] = self.receipt_id
        return body

    @classmethod
    def of(cls, record: Record, error: LoyaltyError) -> Refusal:
        return cls(record.line, str(error.code), error.message, _receipt_id(record.fields))


Prepare = Callable[[Runtime, Caller, list[Record]], list[Any]]
Accept = Callable[[Runtime, Session, Caller, Record, Any], Response]


def _receipt_key(fields: dict[str, Any]) -> str:
    return str(fields["receipt_id"])


@dataclass(frozen=True)
class KindIntake:
    """How one kind's records are accepted. `prepare(runtime, caller, records)` gives, per
    record, what `accept` needs or the LoyaltyError that refuses it; `accept(runtime, session,
    caller, record, prepared)` stores one record in the batch's transaction."""

    accept: Accept
    prepare: Prepare | None = None
    receipt_key: Callable[[dict[str, Any]], str] = _receipt_key
    bare: bool = False  # `accept` raises its refusals before its first write: no savepoint


# ---------------------------------------------------------------- earns


@dataclass(frozen=True)
class _ReadyEarn:
    op: dict[str, Any]
    signature: SignedFields | None
    fresh: Fresh | None


def _prepare_earns(runtime: Runtime, caller: Caller, records: list[Record]) -> list[Any]:
    """`accept.prepare_earn` and `accept.earn_operation` for many earns: the members in one
    query, their tiers in one chain call, the managed partner's nonces in one reservation,
    the signatures of self-signed records checked against the chain in one call."""
    assert caller.partner_id is not None
    partner = runtime.partner_terms(caller.partner_id)
    found = runtime.member_addresses([r.fields["member_id"] for r in records])
    tiers = runtime.tiers_of([address for address, _ in found.values()])
    signed = [r for r in records if r.fields.get("partner_signature") is not None]
    fresh: dict[int, Fresh] = {}
    if signed:
        used = runtime.ledger.views(
            [("partnerNonceUsed", (partner.id, r.fields["partner_signature"].nonce)) for r in signed]
        )
        chain_now = runtime.chain.latest_timestamp()
        fresh = {r.line: Fresh(chain_now=chain_now, nonce_used=bool(u)) for r, u in zip(signed, used, strict=True)}
    unsigned = len(records) - len(signed)
    nonces = iter(range(0))
    if partner.managed and unsigned:
        start = reserve_nonces(runtime, partner.id, unsigned)
        nonces = iter(range(start, start + unsigned))
    out: list[Any] = [None] * len(records)
    jobs: list[tuple[int, Prepared]] = []
    for i, record in enumerate(records):
        f = record.fields
        member = found.get(f["member_id"])
        if member is None:
            out[i] = NotFound(f"no member {f['member_id']}", code=ErrorCode.UNKNOWN_MEMBER)
            continue
        signature: SignedFields | None = f.get("partner_signature")
        prepared = Prepared(
            member[0],
            tier=tiers[member[0]],
            nonce=None if signature is not None else next(nonces, None),
            fresh=fresh.get(record.line),
        )
        jobs.append((i, prepared))

    def build(chunk: list[tuple[int, Prepared]]) -> list[tuple[int, Any]]:
        built: list[tuple[int, Any]] = []
        for i, prepared in chunk:
            f = records[i].fields
            try:
                check_currency(partner, f["currency"])
                built.append((i, earn_operation(runtime, partner=partner, prepared=prepared, in_flight=False, **f)))
            except LoyaltyError as exc:
                built.append((i, exc))
        return built

    # The signatures in threads: libsecp256k1 lets go of the GIL while it signs.
    size = max(1, -(-len(jobs) // SIGNING_THREADS))
    with ThreadPoolExecutor(SIGNING_THREADS, thread_name_prefix="batch-sign") as pool:
        for chunk in pool.map(build, [jobs[k : k + size] for k in range(0, len(jobs), size)]):
            for i, result in chunk:
                out[i] = result
    nonces_taken: set[int] = set()
    for i, result in enumerate(out):
        if isinstance(result, LoyaltyError):
            continue
        signature = records[i].fields.get("partner_signature")
        if signature is not None:
            if signature.nonce in nonces_taken:
                out[i] = Conflict(
                    f"nonce {signature.nonce} is already used by an earlier record of this batch",
                    code=ErrorCode.NONCE_ALREADY_USED,
                )
                continue
            nonces_taken.add(signature.nonce)
        out[i] = _ReadyEarn(result, signature, fresh.get(records[i].line))
    return out


def _accept_earn(runtime: Runtime, session: Session, caller: Caller, record: Record, ready: _ReadyEarn) -> Response:
    if ready.signature is not None:  # spent since it was read, by an operation on its way?
        in_flight = nonce_in_flight(session, nonce=ready.signature.nonce, partner_id=caller.partner_id)
        check_fresh(ready.fresh, ready.signature, in_flight)
    return store_accepted(session, ready.op)


def reserve_nonces(runtime: Runtime, partner_id: int, count: int) -> int:
    """The first of `count` signature nonces of a managed partner, never handed out before
    (like `Runtime.partner_nonce`'s blocks; nonces left unused cost nothing on-chain)."""
    with runtime.writes.begin() as session:
        partner = session.get(Partner, partner_id, with_for_update=True)
        if partner is None:
            raise NotFound(f"no partner {partner_id}", code=ErrorCode.UNKNOWN_PARTNER)
        start = int(partner.next_nonce)
        partner.next_nonce = start + count
    return start


# ---------------------------------------------------------------- reversals


def _accept_reversal(runtime: Runtime, session: Session, caller: Caller, record: Record, _ready: Any) -> Response:
    return accept_reversal(runtime, session, caller=caller, **record.fields)


def _reversal_key(fields: dict[str, Any]) -> str:
    return str(fields.get("refund_id") or fields["receipt_id"])


# The dispatch table: one entry per kind that batches accept. Awards and refunds join it when
# their single-operation acceptance exists.
INTAKE: dict[str, KindIntake] = {
    Kind.EARN: KindIntake(accept=_accept_earn, prepare=_prepare_earns, bare=True),
    Kind.REVERSAL: KindIntake(accept=_accept_reversal, receipt_key=_reversal_key),
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
                _receipt_id(record.fields),
            )
            continue
        key = (record.kind, intake.receipt_key(record.fields))
        if key in seen:
            before.refused[record.line] = Refusal(
                record.line,
                ErrorCode.DUPLICATE_RECEIPT,
                f"receipt {key[1]} already has a {record.kind} on an earlier line of this batch",
                _receipt_id(record.fields),
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
        _receipt_id(record.fields),
    )
    return True


def _receipt_id(fields: dict[str, Any]) -> str | None:
    value = fields.get("receipt_id")
    return value if isinstance(value, str) else None


_OPERATIONS = Base.metadata.tables["operations"]
_BATCHES = Base.metadata.tables[IntakeBatch.__tablename__]
