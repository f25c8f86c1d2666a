"""What batch intake is made of: a record, a refusal, and a kind's entry in the dispatch
table (gateway/operations/batches.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from gateway.app.runtime import Runtime
from gateway.core.errors import LoyaltyError
from gateway.core.security import Caller
from gateway.operations.idempotency import Response

MAX_RECORDS = 10_000
# What a record may name as its kind (SPEC); those without an entry in the dispatch table are
# refused `kind_not_supported`, record by record.
BATCH_KINDS = ("earn", "award", "reversal", "refund")


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
        return cls(record.line, str(error.code), error.message, receipt_id_of(record.fields))


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


def receipt_id_of(fields: dict[str, Any]) -> str | None:
    value = fields.get("receipt_id")
    return value if isinstance(value, str) else None
