"""Receipt proofs: a canonical receipt, its keccak-256, and the on-chain event carrying it.

Two ways in. With the gateway's database: the receipt the gateway stored (its custody
copy) for a partner's receipt id, and the event at the position the index names (or, when
the index has none, the event found on the chain by the receipt's hash). With only a receipt document (a JSON
file an auditor was handed): hash it and search the ledger's events for that reference.
Either way `matches` is recomputed here from the document's bytes, never copied.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from eth_utils import keccak
from hexbytes import HexBytes
from sqlalchemy import select
from sqlalchemy.orm import Session
from web3 import Web3

from gateway.chain.events import get_logs
from gateway.chain.ledger import Ledger, decode_error
from gateway.chain.outcomes import RESULT_EVENT
from gateway.core.errors import ErrorCode, Invalid, NotFound
from gateway.db.models import Operation, StoredReceipt

SEARCH_PAGE_BLOCKS = 50_000  # a topic-filtered search returns few logs: large pages are cheap


def canonical(document: dict[str, Any]) -> bytes:
    """The canonical bytes of a receipt document (as partners.signing.Receipt writes them)."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def receipt_hash(canonical_bytes: bytes) -> str:
    return "0x" + keccak(canonical_bytes).hex()


@dataclass(frozen=True)
class CarryingEvent:
    """A ledger event that names a receipt reference: a domain event or a rejection."""

    name: str
    tx_hash: str
    block_number: int
    block_hash: str
    log_index: int
    receipt_ref: str
    partner_id: int | None
    member: str | None
    points: int | None
    error: str | None = None  # OperationRejected: the contract's reason, decoded

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        if out["error"] is None:
            del out["error"]  # only rejections have one
        return out


def _carrying(ledger: Ledger, log: Any) -> CarryingEvent | None:
    event = ledger.decode_log(log)
    if event is None or event.name not in (*RESULT_EVENT.values(), "OperationRejected"):
        return None
    a = event.args
    return CarryingEvent(
        name=event.name,
        tx_hash=event.tx_hash,
        block_number=event.block_number,
        block_hash=HexBytes(log["blockHash"]).to_0x_hex(),
        log_index=event.log_index,
        receipt_ref="0x" + bytes(a["receiptRef"]).hex(),
        partner_id=a.get("partnerId"),
        member=a.get("member"),
        points=a.get("points"),
        error=str(decode_error(a["reason"])) if event.name == "OperationRejected" else None,
    )


def event_at(w3: Web3, ledger: Ledger, tx_hash: str, log_index: int) -> CarryingEvent | None:
    """The event at (transaction, log index), read from the transaction's receipt."""
    receipt = w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
    for log in receipt["logs"]:
        if int(log["logIndex"]) == log_index:
            return _carrying(ledger, log)
    return None


def events_carrying(
    w3: Web3, ledger: Ledger, ref: str, *, from_block: int, to_block: int | None = None
) -> list[CarryingEvent]:
    """Every Earned/Redeemed/Reversed/OperationRejected event whose receiptRef is `ref`.

    The reference is an indexed topic (the fourth of the domain events, the third of
    OperationRejected), so the node filters: no event stream is read."""
    if to_block is None:
        to_block = w3.eth.block_number
    found = []
    for topics in ([None, None, None, ref], [None, None, ref]):
        for log in get_logs(w3, ledger.address, from_block, to_block, topics=topics, page=SEARCH_PAGE_BLOCKS):
            if len(log["topics"]) == len(topics) and (event := _carrying(ledger, log)) is not None:
                found.append(event)
    return sorted(found, key=lambda e: (e.block_number, e.log_index))


def _verdict(kind: str | None, partner_id: int | None, recomputed: str, event: CarryingEvent | None) -> bool:
    return (
        event is not None
        and event.receipt_ref == recomputed
        and (kind is None or event.name == RESULT_EVENT.get(kind))
        and (partner_id is None or event.partner_id == partner_id)
    )


def stored_receipt_proof(
    w3: Web3, ledger: Ledger, session: Session, *, partner_id: int, receipt_id: str, kind: str | None
) -> dict[str, Any]:
    """The receipt the gateway stored, its hash recomputed, and the event carrying it.

    The document is the custody copy (as accepted). The event is read from the chain: at
    the index's (transaction, log index) when the operation is confirmed there, otherwise
    searched for by the recomputed hash."""
    query = select(StoredReceipt).where(StoredReceipt.partner_id == partner_id, StoredReceipt.receipt_id == receipt_id)
    if kind is not None:
        query = query.where(StoredReceipt.kind == kind)
    stored = list(session.scalars(query.order_by(StoredReceipt.seq)))
    if not stored:
        raise NotFound(f"no receipt {receipt_id} of partner {partner_id}", code=ErrorCode.UNKNOWN_RECEIPT)
    doc = next((r for r in stored if r.kind == "earn"), stored[0])
    op = session.scalar(select(Operation).where(Operation.id == doc.operation_id))
    recomputed = receipt_hash(doc.receipt_doc.encode())
    event: CarryingEvent | None = None
    extra: dict[str, Any] = {}
    if op is not None and op.status == "confirmed" and op.tx_hash is not None and op.log_index is not None:
        event = event_at(w3, ledger, op.tx_hash, op.log_index)
    else:
        # Not confirmed in the index (pending, rejected, or no index row): the chain is
        # searched for the hash; a rejection is listed, but only an operation matches.
        found = events_carrying(w3, ledger, recomputed, from_block=ledger.deployment_block)
        event = next((e for e in found if e.name == RESULT_EVENT.get(doc.kind)), None)
        extra["events"] = [e.as_json() for e in found]
    return {
        "partner_id": partner_id,
        "receipt_id": receipt_id,
        "kind": doc.kind,
        "operation_id": doc.operation_id,
        "status": op.status if op is not None else "not in the index",
        "receipt": json.loads(doc.receipt_doc),
        "receipt_canonical": doc.receipt_doc,
        "receipt_hash": recomputed,
        "event": event.as_json() if event else None,
        "matches": _verdict(doc.kind, partner_id, recomputed, event),
        **extra,
    }


def document_of(text: str) -> dict[str, Any]:
    """A receipt document from a file: the document itself, or a proof that contains it
    (the output of `loyalty audit receipt --json` or of the receipts endpoint)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise Invalid(f"the receipt file is not JSON: {exc}", code=ErrorCode.MALFORMED_JSON) from exc
    if isinstance(data, dict) and isinstance(data.get("receipt_canonical"), str):
        data = json.loads(data["receipt_canonical"])
    elif isinstance(data, dict) and isinstance(data.get("receipt"), dict):
        data = data["receipt"]
    if not isinstance(data, dict) or "kind" not in data or "partner_id" not in data:
        raise Invalid(
            "the file holds no receipt document (an object with kind, partner_id...)", code=ErrorCode.NOT_A_RECEIPT
        )
    return data


def document_proof(w3: Web3, ledger: Ledger, document: dict[str, Any], *, from_block: int) -> dict[str, Any]:
    """A receipt document and every ledger event carrying its hash; no database involved."""
    raw = canonical(document)
    recomputed = receipt_hash(raw)
    found = events_carrying(w3, ledger, recomputed, from_block=from_block)
    kind = document.get("kind") if isinstance(document.get("kind"), str) else None
    partner = document.get("partner_id") if isinstance(document.get("partner_id"), int) else None
    carrying = next((e for e in found if _verdict(kind, partner, recomputed, e)), None)
    return {
        "partner_id": partner,
        "receipt_id": document.get("receipt_id"),
        "kind": kind,
        "receipt": document,
        "receipt_canonical": raw.decode(),
        "receipt_hash": recomputed,
        "event": carrying.as_json() if carrying else None,
        "events": [e.as_json() for e in found],
        "matches": carrying is not None,
    }
