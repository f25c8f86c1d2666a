"""Batch intake's shapes: a record of each kind (the single-operation endpoint's body plus
`kind`), reading a batch file (JSON lines or CSV) into records, and the answers.

Lines are the file's own lines, counted from 1: in a CSV file the header is line 1 and the
first record line 2, so a refusal's `line` is where an editor shows the record. One record
per line: a CSV field may be quoted (commas, doubled quotes) but may not hold a line break.
Blank lines are skipped (and counted).
"""

from __future__ import annotations

import csv
import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from gateway.api.schemas.requests import AwardCreate, EarnCreate, RefundCreate, ReversalCreate
from gateway.api.schemas.responses import Body
from gateway.core.errors import ErrorCode, Invalid, LoyaltyError, TooLarge
from gateway.operations.batches import BATCH_KINDS, MAX_RECORDS, Record, Refusal
from gateway.operations.signatures import SignedFields

CSV = "text/csv"
NDJSON = "application/x-ndjson"
CONTENT_TYPES = (CSV, NDJSON)


class EarnRecord(EarnCreate):
    kind: Literal["earn"]


class ReversalRecord(ReversalCreate):
    kind: Literal["reversal"]


class AwardRecord(AwardCreate):
    kind: Literal["award"]


class RefundRecord(RefundCreate):
    kind: Literal["refund"]


# The kinds whose records are validated here; a kind without a model goes through as read and
# is refused by the domain's dispatch table if that has no entry for it either.
RECORD_MODELS: dict[str, type[BaseModel]] = {
    "earn": EarnRecord,
    "award": AwardRecord,
    "reversal": ReversalRecord,
    "refund": RefundRecord,
}
INTEGER_COLUMNS = {"amount_minor", "points", "partner_signature.nonce", "partner_signature.deadline"}
_INTEGER = re.compile(r"^-?[0-9]{1,90}$")  # longer ones stay text: the schema says "not an integer"


def _columns(model: type[BaseModel]) -> set[str]:
    names: set[str] = set()
    for name in model.model_fields:
        if name == "partner_signature":
            names.update(f"{name}.{part}" for part in ("signature", "nonce", "deadline"))
        else:
            names.add(name)
    return names


COLUMNS = set().union(*(_columns(m) for m in RECORD_MODELS.values()))


class BatchRefusal(Body):
    line: int
    code: str
    message: str
    receipt_id: str | None = None


class BatchAccepted(Body):
    """202: every record was accepted or refused; the refused ones changed nothing."""

    batch_id: str
    records: int
    accepted: int
    refused: list[BatchRefusal]


class BatchLine(Body):
    line: int
    kind: str | None = None
    receipt_id: str | None = None
    status: str  # accepted | submitted | confirmed | rejected | refused
    operation_id: str | None = None
    points: int | None = None
    tx_hash: str | None = None
    block_number: int | None = None
    log_index: int | None = None
    error: dict[str, Any] | None = None


class BatchView(Body):
    batch_id: str
    partner_id: int
    content_type: str
    submitted_at: str
    records: int
    accepted: int
    counts: dict[str, int]
    done: bool
    items: list[BatchLine]
    next_cursor: int | None


def media_type(header: str | None) -> str:
    """The media type of a Content-Type header, or unsupported_content_type."""
    value = (header or "").split(";", 1)[0].strip().lower()
    if value not in CONTENT_TYPES:
        raise Invalid(
            f"a batch is {CSV} (with a header row) or {NDJSON} (JSON lines), not {value or 'untyped'}",
            code=ErrorCode.UNSUPPORTED_CONTENT_TYPE,
        )
    return value


def read_batch(body: bytes, content_type: str) -> tuple[list[Record], list[Refusal]]:
    """The records of a batch file and the refusals of the lines that could not be read or do
    not match their kind's schema. A file that cannot be read at all (not UTF-8, no header, no
    record) or that holds more than MAX_RECORDS records raises, and nothing is accepted."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = body.count(b"\n", 0, exc.start) + 1
        raise Invalid(f"the batch is not UTF-8 text (line {line})", code=ErrorCode.MALFORMED_BATCH) from exc
    lines = text.removeprefix("\ufeff").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    rows = _csv_rows(lines) if content_type == CSV else _ndjson_rows(lines)
    count = sum(1 for _ in rows)
    if count == 0:
        raise Invalid("the batch holds no record", code=ErrorCode.MALFORMED_BATCH)
    if count > MAX_RECORDS:
        raise TooLarge(
            f"a batch holds at most {MAX_RECORDS} records, not {count}; nothing was accepted",
            code=ErrorCode.TOO_MANY_RECORDS,
            records=count,
            max_records=MAX_RECORDS,
        )
    records: list[Record] = []
    refused: list[Refusal] = []
    for line, fields in rows:
        if isinstance(fields, LoyaltyError):
            refused.append(Refusal(line, str(fields.code), fields.message))
            continue
        record = _record(line, fields)
        if isinstance(record, Refusal):
            refused.append(record)
        else:
            records.append(record)
    return records, refused


Row = tuple[int, "dict[str, Any] | LoyaltyError"]


def _malformed(message: str) -> LoyaltyError:
    return Invalid(message, code=ErrorCode.MALFORMED_RECORD)


def _ndjson_rows(lines: list[str]) -> list[Row]:
    rows: list[Row] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError as exc:  # JSONDecodeError, or an integer too long to read
            detail = f"{exc.msg} at column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else str(exc)
            rows.append((number, _malformed(f"not JSON: {detail}")))
            continue
        if not isinstance(value, dict):
            rows.append((number, _malformed("a record is a JSON object")))
            continue
        rows.append((number, value))
    return rows


def _csv_rows(lines: list[str]) -> list[Row]:
    if not lines or not lines[0].strip():
        raise Invalid("a CSV batch starts with its header row (line 1)", code=ErrorCode.MALFORMED_BATCH)
    try:
        header = [name.strip() for name in _split(lines[0].rstrip("\r"))]
    except csv.Error as exc:
        raise Invalid(f"the header row cannot be read: {exc}", code=ErrorCode.MALFORMED_BATCH) from exc
    unknown = [name for name in header if name not in COLUMNS and name != "kind"]
    if "kind" not in header or unknown or len(set(header)) != len(header):
        problem = (
            f"unknown column {unknown[0]!r}"
            if unknown
            else "no 'kind' column"
            if "kind" not in header
            else "a column named twice"
        )
        raise Invalid(
            f"the header row has {problem}; columns are kind, {', '.join(sorted(COLUMNS))}",
            code=ErrorCode.MALFORMED_BATCH,
        )
    rows: list[Row] = []
    for number, raw in enumerate(lines[1:], start=2):
        line = raw.rstrip("\r")
        if not line.strip():
            continue
        try:
            cells = _split(line)
        except csv.Error as exc:
            rows.append((number, _malformed(f"the CSV line cannot be read: {exc}")))
            continue
        if len(cells) != len(header):
            rows.append((number, _malformed(f"the line has {len(cells)} fields, the header {len(header)}")))
            continue
        fields: dict[str, Any] = {}
        for name, cell in zip(header, cells, strict=True):
            value: Any = cell.strip()
            if value == "":
                continue  # an empty cell: the field is absent
            if name in INTEGER_COLUMNS and _INTEGER.match(value):
                value = int(value)
            if "." in name:
                outer, inner = name.split(".", 1)
                fields.setdefault(outer, {})[inner] = value
            else:
                fields[name] = value
        rows.append((number, fields))
    return rows


def _split(line: str) -> list[str]:
    """One CSV line's fields (RFC 4180 quoting, strictly: a stray quote is an error)."""
    if '"' not in line:
        return line.split(",")
    reader = csv.reader([line], strict=True)
    cells = next(reader, [])
    if next(reader, None) is not None:  # a quoted field left open runs past the line
        raise csv.Error("a quoted field is not closed")
    return cells


def _record(line: int, fields: dict[str, Any]) -> Record | Refusal:
    kind = fields.get("kind")
    receipt_id = fields.get("receipt_id") if isinstance(fields.get("receipt_id"), str) else None
    if not isinstance(kind, str) or kind not in BATCH_KINDS:
        return Refusal(
            line, ErrorCode.VALIDATION_ERROR, f"kind must be one of {', '.join(BATCH_KINDS)}, not {kind!r}", receipt_id
        )
    model = RECORD_MODELS.get(kind)
    if model is None:  # a kind the domain will refuse as not supported yet
        return Record(line, kind, {k: v for k, v in fields.items() if k != "kind"})
    try:
        validated = model.model_validate(fields)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'record'}: {e['msg']}" for e in exc.errors(include_url=False)
        )
        return Refusal(line, ErrorCode.VALIDATION_ERROR, problems, receipt_id)
    values = {name: getattr(validated, name) for name in type(validated).model_fields if name != "kind"}
    signed = values.get("partner_signature")
    if signed is not None:
        values["partner_signature"] = SignedFields(signed.signature, signed.nonce, signed.deadline)
    return Record(line, kind, values)
