"""Batch files for the partner SDK: submitting many records in one request (POST /v1/batches)
and reading back how far each line got (GET /v1/batches/{id}).

A batch is a CSV file with a header row (`text/csv`) or JSON lines (`application/x-ndjson`);
each record is the single-operation body plus `kind` (`earn`, `reversal`; `award` and
`refund` where the gateway accepts them). Lines are counted from 1 as the file has them (a
CSV header is line 1). Records given as dicts are sent as JSON lines.

A self-custody client (one with a signing key) signs each earn record here, as `earn()` does;
it then reads a CSV file itself and sends the signed records as JSON lines, and reports the
refused lines as the file numbers them.
"""

from __future__ import annotations

import csv
import json
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from partners._core import Call, Core, Flow, Sleep
from partners.errors import PartnerSdkError
from partners.redemption import utc_now_iso
from partners.signing import EarnMessage, Receipt, new_receipt_salt

CSV = "text/csv"
NDJSON = "application/x-ndjson"
_INTEGER_COLUMNS = {"amount_minor", "points", "partner_signature.nonce", "partner_signature.deadline"}


@dataclass(frozen=True)
class BatchRefusal:
    line: int
    code: str
    message: str
    receipt_id: str | None = None


@dataclass(frozen=True)
class BatchSubmitted:
    """The 202 of a batch: how many records were accepted, and each refused one (which changed nothing)."""

    batch_id: str
    records: int
    accepted: int
    refused: list[BatchRefusal]

    @classmethod
    def from_json(cls, data: dict[str, Any], lines: list[int] | None = None) -> BatchSubmitted:
        refused = [
            BatchRefusal(
                lines[int(r["line"]) - 1] if lines else int(r["line"]),
                str(r["code"]),
                str(r["message"]),
                r.get("receipt_id"),
            )
            for r in data.get("refused", [])
        ]
        return cls(str(data["batch_id"]), int(data["records"]), int(data["accepted"]), refused)


@dataclass(frozen=True)
class BatchLine:
    line: int
    status: str  # accepted | submitted | confirmed | rejected | refused
    kind: str | None = None
    receipt_id: str | None = None
    operation_id: str | None = None
    points: int | None = None
    tx_hash: str | None = None
    block_number: int | None = None
    error: dict[str, Any] | None = None


@dataclass(frozen=True)
class BatchStatus:
    """One page of a batch's lines and its counts by status; `done` once nothing is in flight."""

    batch_id: str
    records: int
    accepted: int
    counts: dict[str, int]
    done: bool
    items: list[BatchLine]
    next_cursor: int | None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BatchStatus:
        items = [
            BatchLine(
                line=int(i["line"]),
                status=str(i["status"]),
                kind=i.get("kind"),
                receipt_id=i.get("receipt_id"),
                operation_id=i.get("operation_id"),
                points=i.get("points"),
                tx_hash=i.get("tx_hash"),
                block_number=i.get("block_number"),
                error=i.get("error"),
            )
            for i in data.get("items", [])
        ]
        return cls(
            batch_id=str(data["batch_id"]),
            records=int(data["records"]),
            accepted=int(data["accepted"]),
            counts={str(k): int(v) for k, v in data.get("counts", {}).items()},
            done=bool(data["done"]),
            items=items,
            next_cursor=data.get("next_cursor"),
        )

    @property
    def confirmed(self) -> int:
        return self.counts.get("confirmed", 0)


def content_type_of(path: Path) -> str:
    if path.suffix.lower() == ".csv":
        return CSV
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        return NDJSON
    raise PartnerSdkError(f"{path}: a batch file is .csv (with a header row) or .jsonl / .ndjson (JSON lines)")


def read_records(data: bytes, content_type: str) -> list[tuple[int, dict[str, Any]]]:
    """(line, record) of a batch file, read as the gateway reads it (for a client that signs)."""
    lines = data.decode("utf-8").removeprefix("\ufeff").split("\n")
    rows: list[tuple[int, dict[str, Any]]] = []
    if content_type == NDJSON:
        for number, line in enumerate(lines, start=1):
            if line.strip():
                rows.append((number, json.loads(line)))
        return rows
    header = [name.strip() for name in next(csv.reader([lines[0].rstrip("\r")]))]
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        record: dict[str, Any] = {}
        for name, cell in zip(header, next(csv.reader([line.rstrip("\r")], strict=True)), strict=False):
            value: Any = cell.strip()
            if value == "":
                continue
            if name in _INTEGER_COLUMNS and value.lstrip("-").isdigit():
                value = int(value)
            if "." in name:
                outer, inner = name.split(".", 1)
                record.setdefault(outer, {})[inner] = value
            else:
                record[name] = value
        rows.append((number, record))
    return rows


def _ndjson(records: Iterable[Mapping[str, Any]]) -> bytes:
    return b"".join(json.dumps(dict(r), separators=(",", ":")).encode() + b"\n" for r in records)


def submit(
    core: Core,
    records: Iterable[Mapping[str, Any]] | str | Path,
    content_type: str | None,
    idempotency_key: str | None,
) -> Flow[BatchSubmitted]:
    """POST /v1/batches with a file (its bytes as they are) or records (as JSON lines)."""
    lines: list[int] | None = None  # the file's line of each record sent, when they differ
    if isinstance(records, str | Path):
        path = Path(records)
        content_type = content_type or content_type_of(path)
        data = path.read_bytes()
        if core.signing_key is None:
            call = Call("POST", "/v1/batches", data, idempotency_key or str(uuid.uuid4()), content_type=content_type)
            return BatchSubmitted.from_json((yield call))
        read = read_records(data, content_type)
        lines = [line for line, _ in read]
        rows: list[dict[str, Any]] = [record for _, record in read]
    else:
        rows = [dict(r) for r in records]
    if core.signing_key is not None:
        rows = yield from _signed(core, rows)
    call = Call("POST", "/v1/batches", _ndjson(rows), idempotency_key or str(uuid.uuid4()), content_type=NDJSON)
    return BatchSubmitted.from_json((yield call), lines)


def _signed(core: Core, rows: list[dict[str, Any]]) -> Flow[list[dict[str, Any]]]:
    """Each earn record signed with the partner's key (a record that carries its signature, or
    that is not an earn, goes as it is: the gateway refuses a reversal it cannot check)."""
    partner_id = yield from core.own_partner_id()
    domain = yield from core.domain()
    signed: list[dict[str, Any]] = []
    for row in rows:
        if row.get("kind") != "earn" or "partner_signature" in row:
            signed.append(row)
            continue
        amount = row.get("amount_minor")
        if not isinstance(amount, int) or isinstance(amount, bool) or not isinstance(row.get("member_id"), str):
            signed.append(row)  # the gateway says what is wrong with it
            continue
        row = {**row, "issued_at": row.get("issued_at") or utc_now_iso(), "receipt_salt": new_receipt_salt()}
        member = yield from core.member_address(row["member_id"])
        ref = Receipt(
            kind="earn",
            partner_id=partner_id,
            receipt_id=str(row.get("receipt_id")),
            member_id=row["member_id"],
            amount_minor=amount,
            currency=str(row.get("currency")),
            issued_at=row["issued_at"],
            salt=row["receipt_salt"],
        ).ref()
        row["partner_signature"] = core._partner_signed(domain, _earn_message(partner_id, member, amount, ref))
        signed.append(row)
    return signed


def _earn_message(partner_id: int, member: str, amount: int, ref: bytes) -> Callable[[int, int], EarnMessage]:
    return lambda nonce, deadline: EarnMessage(partner_id, member, amount, ref, nonce, deadline)


def status(core: Core, batch_id: str, cursor: int | None, limit: int, state: str | None) -> Flow[BatchStatus]:
    params: dict[str, Any] = {"limit": limit}
    if cursor is not None:
        params["cursor"] = cursor
    if state is not None:
        params["status"] = state
    return BatchStatus.from_json((yield Call("GET", f"/v1/batches/{batch_id}", params=params)))


def wait(core: Core, batch_id: str, timeout: float, poll_interval: float = 0.5) -> Flow[BatchStatus]:
    """Polls until no accepted record of the batch is still on its way (all confirmed or rejected)."""
    deadline = time.monotonic() + timeout
    while True:
        page = yield from status(core, batch_id, None, 1, None)
        if page.done:
            return page
        left = deadline - time.monotonic()
        if left <= 0:
            raise PartnerSdkError(f"batch {batch_id} still has records in flight after {timeout} s: {page.counts}")
        yield Sleep(min(poll_interval, left))
