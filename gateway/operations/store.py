"""The outbox: accepted operations and their custody copies, written on the hot path with Core."""

from __future__ import annotations

import json
import secrets
from typing import Any

from sqlalchemy import bindparam, insert, select
from sqlalchemy.orm import Session

from gateway.core.errors import Conflict, ErrorCode
from gateway.db.models import Base, utcnow
from gateway.db.writer import deferred
from gateway.operations.idempotency import Response
from gateway.operations.kinds import Kind, Status
from partners.signing import Receipt


def new_operation(*, kind: Kind, receipt: Receipt, **fields: Any) -> dict[str, Any]:
    """An accepted operation's row, with its canonical receipt document and that document's
    hash. A plain dict: on the hot path an ORM instance costs more than the row it holds.
    Kind and status go in as plain strings (the database driver adapts an enum more slowly)."""
    return {
        "id": secrets.token_hex(16),
        "kind": kind.value,
        "status": Status.ACCEPTED.value,
        "receipt_doc": receipt.canonical().decode(),
        "receipt_ref": "0x" + receipt.ref().hex(),
        **fields,
    }


# Core, on the session's connection: no ORM compile and bookkeeping on the hot path.
_OPERATIONS = Base.metadata.tables["operations"]


_OPERATION_KEYS = [c.key for c in _OPERATIONS.columns if c.key != "seq"]


_INSERT_OPERATION_SEQ = insert(_OPERATIONS).returning(_OPERATIONS.c.id, _OPERATIONS.c.seq)


_RECEIPTS = Base.metadata.tables["receipts"]


_INSERT_RECEIPT = insert(_RECEIPTS)


_RECEIPT_TAKEN = select(_OPERATIONS.c.id).where(
    _OPERATIONS.c.partner_id == bindparam("partner_id"),
    _OPERATIONS.c.kind == bindparam("kind"),
    _OPERATIONS.c.receipt_id == bindparam("receipt_id"),
)


# The custody copy's columns that it shares with the operation, under the same names.
_RECEIPT_FROM_OPERATION = [c.key for c in _RECEIPTS.columns if c.key not in ("operation_id", "accepted_at")]


def store_accepted(session: Session, op: dict[str, Any], **extra: Any) -> Response:
    """Stores the operation (in the caller's transaction) and the 202 the caller is owed."""
    # Core inserts: the unit of work's bookkeeping costs more than the rows on the hot path.
    values = {c: v for c in _OPERATION_KEYS if (v := op.get(c)) is not None}
    values["created_at"] = values["updated_at"] = utcnow()  # the machine clock: the batch window counts from it
    # The custody copy `loyalty reindex` rebuilds the operation's index row from.
    receipt = {c: values.get(c) for c in _RECEIPT_FROM_OPERATION}
    receipt.update(operation_id=values["id"], accepted_at=values["created_at"])
    group = deferred(session)
    if group is not None:
        group.add(_insert_accepted, (values, receipt))
    else:
        _insert_accepted(session, [(values, receipt)])
    return Response(
        202,
        {
            "operation_id": values["id"],
            "status": values["status"],
            "points": values.get("points"),
            "receipt_ref": values["receipt_ref"],
            **extra,
        },
    )


def _insert_accepted(session: Session, accepted: list[tuple[dict[str, Any], dict[str, Any]]]) -> None:
    """Operations and their custody copies, one executemany per shape of row."""
    connection = session.connection()
    shapes: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for values, _ in accepted:  # an executemany takes rows with the same columns
        shapes.setdefault(tuple(values), []).append(values)
    seqs: dict[str, int] = {}
    for rows in shapes.values():
        inserted = connection.execute(_INSERT_OPERATION_SEQ, rows)
        seqs.update((row.id, row.seq) for row in inserted)
    receipts = [{**receipt, "seq": seqs[values["id"]]} for values, receipt in accepted]
    connection.execute(_INSERT_RECEIPT, receipts)


def check_duplicate(session: Session, partner_id: int, kind: str, receipt_id: str) -> None:
    if deferred(session) is not None:
        return  # the unique constraint refuses the group's insert; the careful re-run says which
    exists = (
        session.connection()
        .execute(_RECEIPT_TAKEN, {"partner_id": partner_id, "kind": kind, "receipt_id": receipt_id})
        .scalar()
    )
    if exists is not None:
        raise Conflict(
            f"receipt {receipt_id} already has an {kind} (operation {exists})",
            code=ErrorCode.DUPLICATE_RECEIPT,
            operation_id=exists,
        )


def proof_to_column(proof: list[bytes]) -> str:
    """An earn's Merkle proof as the `earn_proof` column stores it (a JSON list of 0x-hex siblings)."""
    return json.dumps(["0x" + p.hex() for p in proof])


def proof_from_column(stored: str | None) -> list[bytes]:
    return [bytes.fromhex(h[2:]) for h in json.loads(stored or "[]")]
