"""What the member and auditor pages show: read from the chain, with names from the index.

The pages' reads, with the helpers they share: the member page's own are in member_reads.py,
the coming programme changes in upcoming.py. No page reads the database or the chain itself.

Nothing here renders HTML (gateway/web/pages.py does). Everything returned is public on the
chain already (balances, events, receipt hashes), plus partner names and the list of a
member's operations the gateway accepted. Stored receipt documents never leave this module:
a page learns only whether one hashes to the reference its event carries.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from eth_abi import encode
from eth_utils import keccak
from hexbytes import HexBytes
from sqlalchemy import select
from sqlalchemy.orm import Session
from web3.exceptions import TransactionNotFound

from gateway.app.runtime import Runtime
from gateway.audit.metrics import Metrics, metrics_of
from gateway.audit.report import (
    History,
    MonthFigures,
    default_period,
    load_history,
    monthly,
    months_of_period,
    outstanding,
    statement,
)
from gateway.audit.settlement import Statement
from gateway.chain.ledger import LedgerEvent
from gateway.chain.outcomes import KIND_OF_EVENT
from gateway.core.errors import ErrorCode, LoyaltyError, NotFound, TooLarge
from gateway.db.models import Operation, Partner
from gateway.points.rules import NEVER, month_label
from partners.signing import Receipt

ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
MEMBER_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,64}$")  # the API's Identifier
TX_HASH = re.compile(r"^0x[0-9a-fA-F]{64}$")
OPERATION_ID = re.compile(r"^[A-Za-z0-9_\-]{1,32}$")
DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
MAX_QUERY_CHARS = 200
MAX_RECEIPT_BYTES = 16 * 1024
RECENT_OPERATIONS = 25


class BadInput(LoyaltyError):
    """A page was asked something it cannot read (a malformed id, date, hash...)."""

    code = ErrorCode.BAD_INPUT


def partner_names(session: Session) -> dict[int, str]:
    return dict(session.execute(select(Partner.id, Partner.name)).all())


def hex_text(value: Any) -> str:
    return HexBytes(value).to_0x_hex()


def month_name(month: int) -> str:
    """A contract month index as people say it: "January 2029"."""
    if month == NEVER:
        return "never"
    return datetime(month // 12, month % 12 + 1, 1, tzinfo=UTC).strftime("%B %Y")


def time_of_block(runtime: Runtime, number: int) -> datetime:
    return datetime.fromtimestamp(int(runtime.chain.w3.eth.get_block(number)["timestamp"]), tz=UTC)


# ------------------------------------------------------------------ members


def times_of_blocks(runtime: Runtime, numbers: set[int]) -> dict[int, datetime]:
    from gateway.chain.events import timestamps

    return {n: datetime.fromtimestamp(t, tz=UTC) for n, t in timestamps(runtime.chain.w3, numbers).items()}


# ------------------------------------------------------------------ proofs


@dataclass
class ReferenceCheck:
    """Whether what the reference stands for hashes to it."""

    checked: bool  # False: nothing to recompute it from
    matches: bool
    recomputed: str | None
    explanation: str


@dataclass
class Proof:
    name: str
    tx_hash: str
    block_number: int
    block_hash: str
    block_time: datetime
    log_index: int
    confirmations: int
    fields: list[tuple[str, str]]  # (label, value) of the event's arguments
    receipt_ref: str | None
    check: ReferenceCheck | None


def _event_fields(event: LedgerEvent, names: dict[int, str]) -> list[tuple[str, str]]:
    a = event.args
    out: list[tuple[str, str]] = []
    labels = {
        "partnerId": "partner",
        "member": "member address",
        "spend": "spend (minor units)",
        "points": "points",
        "expiryMonth": "expires at the end of",
        "receiptRef": "receipt reference",
        "earnReceiptRef": "reference of the purchase refunded",
    }
    for key, value in a.items():
        if key == "partnerId":
            text = f"{value} ({names[value]})" if value in names else str(value)
        elif key == "expiryMonth":
            text = "never" if value == NEVER else f"{month_name(int(value))} ({month_label(int(value))})"
        elif isinstance(value, bytes):
            text = hex_text(value)
        else:
            text = str(value)
        out.append((labels.get(key, key), text))
    return out


def proof(runtime: Runtime, session: Session, *, tx_hash: str, log_index: str, operation_id: str | None) -> Proof:
    """The event at (transaction, log index), read from the chain, and whether the receipt the
    gateway stored for it hashes to its reference."""
    if not TX_HASH.match(tx_hash):
        raise BadInput("A transaction hash is 0x followed by 64 hexadecimal digits.")
    if not log_index.isdigit() or len(log_index) > 6:
        raise BadInput("A log index is a small whole number.")
    if operation_id is not None and not OPERATION_ID.match(operation_id):
        raise BadInput("That is not an operation id.")
    w3 = runtime.chain.w3
    try:
        receipt = w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
    except TransactionNotFound:
        raise NotFound("This chain has no transaction with that hash.", code=ErrorCode.UNKNOWN_TRANSACTION) from None
    position = int(log_index)
    log = next((item for item in receipt["logs"] if int(item["logIndex"]) == position), None)
    event = runtime.ledger.decode_log(log) if log is not None else None
    if event is None:
        raise NotFound(
            "That transaction has no event of the points ledger at this log index.", code=ErrorCode.UNKNOWN_EVENT
        )
    names = partner_names(session)
    ref = event.args.get("receiptRef")
    return Proof(
        name=event.name,
        tx_hash=event.tx_hash,
        block_number=event.block_number,
        block_hash=hex_text(receipt["blockHash"]),
        block_time=time_of_block(runtime, event.block_number),
        log_index=event.log_index,
        confirmations=int(w3.eth.block_number) - event.block_number + 1,
        fields=_event_fields(event, names),
        receipt_ref=hex_text(ref) if ref is not None else None,
        check=_check_reference(session, event, operation_id),
    )


def _check_reference(session: Session, event: LedgerEvent, operation_id: str | None) -> ReferenceCheck | None:
    a = event.args
    if event.name == "Expired":
        expected = keccak(encode(["address", "uint32"], [a["member"], a["expiryMonth"]]))
        return ReferenceCheck(
            True,
            expected == bytes(a["receiptRef"]),
            hex_text(expected),
            "Expiry has no receipt: its reference is keccak-256 of (member, expiry month), recomputed here.",
        )
    kind = KIND_OF_EVENT.get(event.name)
    if kind is None:
        return None
    ref = hex_text(a["receiptRef"])
    op = session.scalar(select(Operation).where(Operation.id == operation_id)) if operation_id else None
    if op is None or (op.tx_hash or "").lower() != event.tx_hash.lower() or op.log_index != event.log_index:
        # No (or another) operation named in the link: look it up by partner, kind and reference.
        op = session.scalar(
            select(Operation).where(
                Operation.partner_id == a["partnerId"], Operation.kind == kind, Operation.receipt_ref == ref
            )
        )
    if op is None:
        return ReferenceCheck(False, False, None, "This gateway holds no receipt for this event.")
    recomputed = "0x" + keccak(op.receipt_doc.encode()).hex()
    return ReferenceCheck(
        True,
        recomputed == ref,
        recomputed,
        "keccak-256 of the receipt document this gateway stored for the operation, computed now "
        "(the document itself holds personal data and is not shown).",
    )


# ------------------------------------------------------------------ auditors


class HistoryCache:
    """The ledger's events, read in full once per process and then only the new blocks."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._history: History | None = None

    def get(self, runtime: Runtime) -> History:
        with self._lock:
            self._history = load_history(
                runtime.chain.w3,
                runtime.ledger,
                from_block=runtime.ledger.deployment_block,
                since=self._history,
            )
            return self._history


def _day(text: str, what: str) -> int:
    if not DAY.match(text):
        raise BadInput(f"The {what} date must look like 2026-11-01.")
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise BadInput(f"The {what} date {text} does not exist.") from None
    if not 2000 <= day.year <= 2200:
        raise BadInput(f"The {what} date must be between the years 2000 and 2200.")
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


def period(history: History, period_from: str | None, period_to: str | None) -> tuple[int, int]:
    """[from, to) in seconds from the form's dates (the whole history when left empty)."""
    start, end = default_period(history)
    if period_from:
        start = _day(period_from.strip(), "first")
    if period_to:
        end = _day(period_to.strip(), "end")
    if end <= start:
        raise BadInput("The end date must come after the first date.")
    return start, end


@dataclass
class AuditPage:
    history: History
    supply: int  # totalSupply at the last block, read from the contract
    liability: int  # the same, recomputed from the events
    period_from: int
    period_to: int
    statement: Statement  # its partner lines, and their names (not on-chain) below
    names: dict[int, str]
    months: list[MonthFigures]
    metrics: Metrics  # the programme metrics of the period (SPEC section 5, r2)


def audit_page(runtime: Runtime, session: Session, history: History, start: int, end: int) -> AuditPage:
    names = partner_names(session)
    st = statement(history, period_from=start, period_to=end)
    first, last = months_of_period(start, end)
    return AuditPage(
        history=history,
        supply=runtime.ledger.total_supply(history.to_block),
        liability=outstanding(history),
        period_from=start,
        period_to=end,
        statement=st,
        names=names,
        months=monthly(history, first_month=first, last_month=last),
        metrics=metrics_of(history.events, history.times, period_from=start, period_to=end),
    )


# ------------------------------------------------------------------ receipt check


@dataclass
class Sighting:
    """An on-chain event that names a receipt reference."""

    name: str
    relation: str
    partner: str
    points: int
    tx_hash: str
    block_number: int
    log_index: int

    @property
    def proof(self) -> str:
        return f"/proof/{self.tx_hash}/{self.log_index}"


@dataclass
class Candidate:
    label: str
    hash: str
    sightings: list[Sighting] = field(default_factory=list)


def _canonical(text: str) -> bytes | None:
    """The canonical encoding of a pasted JSON receipt (sorted keys, no spaces, UTF-8), as
    partners.signing.Receipt makes it; None if the text is not a JSON object."""
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    try:
        return Receipt(**doc).canonical()
    except TypeError:  # other fields than a Receipt's: the same encoding, applied directly
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def check_receipt(history: History, text: str, names: dict[int, str]) -> list[Candidate]:
    """keccak-256 of the pasted receipt (and of its canonical form, if that differs), and the
    on-chain events that carry it."""
    raw = text.encode()
    if len(raw) > MAX_RECEIPT_BYTES:
        raise TooLarge(f"A receipt is at most {MAX_RECEIPT_BYTES // 1024} KiB; this is {len(raw) // 1024} KiB.")
    if not text.strip():
        raise BadInput("Paste a receipt document (its canonical JSON, as the gateway stores it).")
    forms = [("the text exactly as pasted", raw)]
    canonical = _canonical(text)
    if canonical is not None and canonical != raw:
        forms.append(("its canonical form (keys sorted, no spaces)", canonical))
    candidates = [Candidate(label, hex_text(keccak(data))) for label, data in forms]
    wanted = {bytes(HexBytes(c.hash)): c for c in candidates}
    for e in history.events:
        if e.name not in KIND_OF_EVENT:
            continue
        partner = names.get(e.args["partnerId"], f"partner {e.args['partnerId']}")
        for key, relation in (("receiptRef", "carries it as its receipt"), ("earnReceiptRef", "refunds this purchase")):
            found = wanted.get(bytes(e.args[key])) if key in e.args else None
            if found is not None:
                found.sightings.append(
                    Sighting(e.name, relation, partner, int(e.args["points"]), e.tx_hash, e.block_number, e.log_index)
                )
    return candidates
