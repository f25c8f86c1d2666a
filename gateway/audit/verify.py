"""Chain-only audit: replay every ledger event with the plain-Python rules and compare.

An auditor needs only an RPC endpoint and the contract's address (and deployment block).
Every event from the deployment block is fetched (paged eth_getLogs), replayed into the
rules model of gateway/points/rules.py, and the result compared with the contract's own
views at the same block: every member's balance, qualifying points and tier, the supply,
and each partner's issued/reversed/redeemed totals and allowance. Points of each earn are
recomputed from the spend, the partner's rate and the member's tier at that moment.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from eth_utils import keccak
from sqlalchemy import select
from sqlalchemy.orm import Session
from web3 import Web3

from gateway.audit.replay import ZERO, Discrepancy, Replay
from gateway.chain.events import collector_paused, fetch_events, timestamps
from gateway.chain.ledger import Ledger, LedgerEvent
from gateway.chain.outcomes import RESULT_EVENT
from gateway.chain.reads import ChainReads
from gateway.db.models import Operation, StoredReceipt
from gateway.points.rules import month_of

__all__ = ["ZERO", "AuditReport", "Discrepancy", "GatewayIndex", "Replay", "read_index", "verify_chain"]

VIEWS_PER_BATCH = 1_500


@dataclass
class AuditReport:
    from_block: int
    to_block: int
    events: int = 0
    operations: int = 0
    members: int = 0
    supply: int = 0
    index_operations: int | None = None  # how many index rows were matched, if any
    discrepancies: list[Discrepancy] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.discrepancies


INDEX_LAG_SECONDS = 1.0


def verify_chain(
    w3: Web3,
    ledger: Ledger,
    *,
    from_block: int,
    to_block: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    index: IndexSource | None = None,
    fetched: tuple[list[LedgerEvent], dict[int, int]] | None = None,
    stage: Callable[[str], None] | None = None,
) -> AuditReport:
    """Replays [from_block, to_block] and compares with the contract's views at to_block;
    with `index`, also matches the gateway's operations and receipts with the events.

    `index` may be a function reading a live gateway's index: it is read after the events
    (so the submitter has recorded what was mined in the audited blocks) and, if an event
    then has no row, read once more a moment later before that is called a discrepancy.
    `fetched` (the events of exactly that range and the timestamps of their blocks and of
    to_block) spares reading them again when the caller already has them.
    `stage` hears the name of each step as it starts."""
    say = stage or (lambda _name: None)
    if to_block is None:
        to_block = ChainReads.of(w3).head()
    if fetched is None:
        say("reading events")
        events = fetch_events(w3, ledger, from_block, to_block, progress)
        say("reading block times")
        times = timestamps(w3, {e.block_number for e in events} | {to_block})
    else:
        events, times = fetched
    say("replaying")
    replay = Replay()
    months = {number: month_of(t) for number, t in times.items()}
    with collector_paused():
        for event in events:
            replay.apply(event, months[event.block_number], times[event.block_number])
    month = month_of(times[to_block])
    report = AuditReport(from_block, to_block, events=len(events), operations=replay.operations)
    report.discrepancies = replay.discrepancies
    model = replay.model
    members = sorted(replay.seen_members)
    calls: list[tuple[str, tuple[Any, ...]]] = []
    for member in members:
        calls += [("balanceOf", (member,)), ("qualifyingPoints", (member,)), ("tierOf", (member,))]
    calls += [("totalSupply", ())] + [("partner", (pid,)) for pid in sorted(model.partners)]
    say("comparing with the contract")
    values: list[Any] = []
    for i in range(0, len(calls), VIEWS_PER_BATCH):  # nodes cap the size of one JSON-RPC batch
        values += ledger.views(calls[i : i + VIEWS_PER_BATCH], to_block)
    where = f"block {to_block}"
    for i, member in enumerate(members):
        balance, qualifying, tier = values[3 * i : 3 * i + 3]
        for kind, expected, found in (
            ("balance", model.balance(member, month), balance),
            ("qualifying points", model.qualifying(member, month), qualifying),
            ("tier", model.tier_index(member, month, times[to_block]), tier),
        ):
            if expected != found:
                report.discrepancies.append(Discrepancy(f"{kind} of {member}", where, expected, found))
    supply = values[3 * len(members)]
    if supply != model.total_supply(month):
        report.discrepancies.append(Discrepancy("total supply", where, model.total_supply(month), supply))
    for pid, info in zip(sorted(model.partners), values[3 * len(members) + 1 :], strict=True):
        p = model.partners[pid]
        expected_totals = (p.allowance, p.issued, p.reversed, p.redeemed)
        found_totals = (info[5], info[6], info[7], info[8])
        if expected_totals != found_totals:
            report.discrepancies.append(
                Discrepancy(f"partner {pid} allowance/issued/reversed/redeemed", where, expected_totals, found_totals)
            )
    # (r2) Debt: each member that ever owed points, and the sum, against the contract's views.
    # The sum always (a debt the replay never saw shows there), each debtor's when there are any.
    debtors = sorted(replay.debtors)
    found_debts = ledger.views([("debtOf", (d,)) for d in debtors] + [("totalDebt", ())], to_block)
    for debtor, found in zip(debtors, found_debts, strict=False):
        if model.member(debtor).debt != found:
            report.discrepancies.append(Discrepancy(f"debt of {debtor}", where, model.member(debtor).debt, found))
    if model.total_debt() != found_debts[-1]:
        report.discrepancies.append(Discrepancy("total debt", where, model.total_debt(), found_debts[-1]))
    # (r2) Each campaign's spent budget.
    campaign_ids = sorted(model.campaigns)
    spent_views = ledger.views([("campaign", (c,)) for c in campaign_ids], to_block) if campaign_ids else []
    for cid, (_, spent) in zip(campaign_ids, spent_views, strict=True):
        if model.campaigns[cid].spent != spent:
            report.discrepancies.append(
                Discrepancy(f"spent budget of campaign {cid}", where, model.campaigns[cid].spent, spent)
            )
    report.members, report.supply = len(members), supply
    if index is not None:
        say("matching the index")
        report.discrepancies += _match_index(events, index, to_block, report)
    return report


def _match_index(
    events: list[LedgerEvent], index: IndexSource, to_block: int, report: AuditReport
) -> list[Discrepancy]:
    if not callable(index):
        report.index_operations = len(index if isinstance(index, list) else index.operations)
        return verify_index(events, index, to_block=to_block)
    rows = index()
    found = verify_index(events, rows, to_block=to_block)
    if any(d.kind == "event with no index row" for d in found):
        time.sleep(INDEX_LAG_SECONDS)  # the submitter may not have recorded the newest batch yet
        rows = index()
        found = verify_index(events, rows, to_block=to_block)
    report.index_operations = len(rows.operations)
    return found


# ------------------------------------------------------------------ the gateway's index


@dataclass(frozen=True)
class IndexedOperation:
    """An operation as the gateway's index holds it (only what the audit compares)."""

    id: str
    kind: str
    partner_id: int
    status: str
    receipt_doc: str
    receipt_ref: str
    points: int | None
    tx_hash: str | None
    log_index: int | None
    block_number: int | None = None
    receipt_id: str | None = None  # the partner's own id of the receipt (the row's column)


@dataclass(frozen=True)
class StoredDocument:
    """A receipt as the gateway accepted it (its custody copy, apart from the index)."""

    operation_id: str
    kind: str
    partner_id: int
    receipt_doc: str
    receipt_ref: str


@dataclass
class GatewayIndex:
    operations: list[IndexedOperation]
    receipts: list[StoredDocument] | None = None  # None: only the index's own copies are checked


# A list, or a function reading a live gateway's index when the events are in.
IndexSource = GatewayIndex | list[IndexedOperation] | Callable[[], GatewayIndex]


def _hash(document: str) -> str:
    return "0x" + keccak(document.encode()).hex()


def _names(operation_id: str, kind: str, partner_id: int, document: str, receipt_id: str | None = None) -> str:
    """Where a discrepancy is, as a partner finds it in its own books: its receipt id too (the
    row's, or else the stored document's)."""
    if receipt_id is None:
        try:
            receipt_id = str(json.loads(document).get("receipt_id", "?"))
        except (ValueError, AttributeError):
            receipt_id = "? (the stored document is not JSON)"
    return f"operation {operation_id} ({kind} of partner {partner_id}, receipt {receipt_id})"


def verify_index(
    events: list[LedgerEvent], index: GatewayIndex | list[IndexedOperation], *, to_block: int | None = None
) -> list[Discrepancy]:
    """Matches the index one to one with the chain's domain events, and every stored receipt
    with the hash its event carries (recomputed from the stored document, not copied).

    The stored receipts (custody) must hash to their references, and the index's copies
    must equal them. An operation mined but not yet deep enough to be confirmed is matched
    like a confirmed one; one mined after `to_block` (the audited range) is left for the
    next audit."""
    if isinstance(index, list):
        index = GatewayIndex(index)
    found: list[Discrepancy] = []
    stored: dict[str, StoredDocument] = {}
    for kept in index.receipts or []:
        stored[kept.operation_id] = kept
        recomputed = _hash(kept.receipt_doc)
        if recomputed != kept.receipt_ref:
            where = "stored receipt of " + _names(kept.operation_id, kept.kind, kept.partner_id, kept.receipt_doc)
            found.append(
                Discrepancy("stored receipt does not hash to its reference", where, kept.receipt_ref, recomputed)
            )
    by_position = {(e.tx_hash.lower(), e.log_index): e for e in events if e.name in RESULT_EVENT.values()}
    matched: set[tuple[str, int]] = set()
    rows: set[str] = set()
    for op in index.operations:
        rows.add(op.id)
        where = _names(op.id, op.kind, op.partner_id, op.receipt_doc, op.receipt_id)
        recomputed = _hash(op.receipt_doc)
        if recomputed != op.receipt_ref:
            found.append(
                Discrepancy(
                    "index copy of the receipt does not hash to its reference", where, op.receipt_ref, recomputed
                )
            )
        if index.receipts is not None:
            doc = stored.get(op.id)
            if doc is None:
                found.append(Discrepancy("index row with no stored receipt", where, "a stored receipt", "none"))
            else:
                if (doc.receipt_doc, doc.receipt_ref) != (op.receipt_doc, op.receipt_ref):
                    found.append(
                        Discrepancy(
                            "index copy differs from the stored receipt", where, doc.receipt_doc, op.receipt_doc
                        )
                    )
                recomputed = _hash(doc.receipt_doc)  # the stored receipt is what the chain must carry
        mined = op.status == "confirmed" or (op.status == "submitted" and op.log_index is not None)
        if op.kind not in RESULT_EVENT:
            continue  # a migration (r2): its event carries no receipt reference
        if not mined or (to_block is not None and op.block_number is not None and op.block_number > to_block):
            continue
        position = ((op.tx_hash or "").lower(), op.log_index if op.log_index is not None else -1)
        event = by_position.get(position)
        if event is None:
            found.append(Discrepancy("index row with no event", where, f"an event at {position}", "none"))
            continue
        matched.add(position)
        event_ref = "0x" + bytes(event.args["receiptRef"]).hex()
        if event.name != RESULT_EVENT[op.kind] or event.args["partnerId"] != op.partner_id:
            found.append(Discrepancy("index row names another event", where, RESULT_EVENT[op.kind], event.name))
        if event_ref != recomputed:
            found.append(Discrepancy("receipt hash differs from the on-chain event", where, event_ref, recomputed))
        if op.points is not None and op.points != event.args["points"]:
            found.append(Discrepancy("points differ from the on-chain event", where, event.args["points"], op.points))
    for position, event in by_position.items():
        if position not in matched:
            found.append(
                Discrepancy(
                    "event with no index row",
                    f"block {event.block_number} log {event.log_index} (tx {event.tx_hash}), {event.name} of "
                    f"partner {event.args.get('partnerId', '?')}",
                    "an operation in the index",
                    "none",
                )
            )
    for operation_id, kept in stored.items():
        if operation_id not in rows:
            found.append(
                Discrepancy(
                    "stored receipt missing from the index",
                    _names(operation_id, kept.kind, kept.partner_id, kept.receipt_doc),
                    "its operation row (loyalty reindex restores it)",
                    "none",
                )
            )
    return found


def read_index(session: Session) -> GatewayIndex:
    """The gateway's operations and stored receipts, as the audit compares them."""
    operations = [
        IndexedOperation(
            op.id,
            op.kind,
            op.partner_id,
            op.status,
            op.receipt_doc,
            op.receipt_ref,
            op.points,
            op.tx_hash,
            op.log_index,
            op.block_number,
            op.receipt_id,
        )
        for op in session.scalars(select(Operation).order_by(Operation.seq))
    ]
    receipts = [
        StoredDocument(r.operation_id, r.kind, r.partner_id, r.receipt_doc, r.receipt_ref)
        for r in session.scalars(select(StoredReceipt).order_by(StoredReceipt.seq))
    ]
    return GatewayIndex(operations, receipts)
