"""Chain-only audit: replay every ledger event with the plain-Python rules and compare.

Longer than 400 lines: the replay is one pass over the events, and the index comparison reads
the state that pass builds.

An auditor needs only an RPC endpoint and the contract's address (and deployment block).
Every event from the deployment block is fetched (paged eth_getLogs), replayed into the
rules model of gateway/points/rules.py, and the result compared with the contract's own
views at the same block: every member's balance, qualifying points and tier, the supply,
and each partner's issued/reversed/redeemed totals and allowance. Points of each earn are
recomputed from the spend, the partner's rate and the member's tier at that moment.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from eth_utils import keccak
from sqlalchemy import select
from sqlalchemy.orm import Session
from web3 import Web3

from gateway.chain.events import collector_paused, fetch_events, timestamps
from gateway.chain.ledger import Ledger, LedgerEvent, rpc
from gateway.chain.outcomes import RESULT_EVENT
from gateway.db.models import Operation, StoredReceipt
from gateway.points.rules import BPS, NEVER, PartnerModel, PointsModel, month_label, month_of

ZERO = "0x0000000000000000000000000000000000000000"
VIEWS_PER_BATCH = 1_500


@dataclass
class Discrepancy:
    kind: str
    where: str
    expected: Any
    found: Any

    def __str__(self) -> str:
        return f"{self.kind} at {self.where}: the rules give {self.expected}, the chain has {self.found}"


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


class Replay:
    """Applies ledger events to the rules model, noting where the chain disagrees with it."""

    def __init__(self) -> None:
        self.model = PointsModel(tiers=[(0, BPS)])
        self.discrepancies: list[Discrepancy] = []
        self.earns: dict[tuple[int, bytes], tuple[int, int, str]] = {}  # (partner, ref) -> (points, month, member)
        self.reversed: dict[tuple[int, bytes], int] = {}
        self.operations = 0
        self.seen_members: set[str] = set()
        self.swept: dict[int, int] = {}  # expiry month -> points removed by Expired events
        self.point_value: tuple[int, str] = (0, "")
        # member -> (month, qualifying points in that month): each earn needs the member's
        # tier; the 12-month sum is taken once per member and month, then kept up to date.
        self._qualifying: dict[str, tuple[int, int]] = {}

    def note(self, kind: str, event: LedgerEvent, expected: Any, found: Any) -> None:
        where = f"block {event.block_number} log {event.log_index} (tx {event.tx_hash})"
        self.discrepancies.append(Discrepancy(kind, where, expected, found))

    def apply(self, e: LedgerEvent, month: int) -> None:
        a, m = e.args, self.model
        if e.name == "Earned":  # by far the most frequent: tested first
            self._earned(e, month)
        elif e.name == "PartnerAdded":
            m.partners[a["partnerId"]] = PartnerModel(a["signer"], 1, 1, bytes(a["currency"]).decode(), 0)
        elif e.name == "PartnerUpdated":
            p = m.partners[a["partnerId"]]
            p.signer, p.rate_points, p.rate_per_minor_units = a["signer"], a["ratePoints"], a["ratePerMinorUnits"]
        elif e.name == "PartnerStatusChanged":
            m.partners[a["partnerId"]].active = a["active"]
        elif e.name == "AllowanceSet":
            m.partners[a["partnerId"]].allowance = a["allowance"]
        elif e.name == "TiersSet":
            m.tiers = [(int(t[0]), int(t[1])) for t in a["tiers"]]
        elif e.name == "ExpiryPolicySet":
            m.expiry_months = a["months"]
        elif e.name == "TransfersSwitched":
            m.transfers_enabled = a["enabled"]
        elif e.name == "Redeemed":
            self.operations += 1
            self._take(e, a["member"], a["points"], month)
            m.partners[a["partnerId"]].redeemed += a["points"]
        elif e.name == "Reversed":
            self._reversed(e, month)
        elif e.name == "Transfer" and a["from"] != ZERO and a["to"] != ZERO:
            for expiry, part in self._take(e, a["from"], a["value"], month):
                state = m.member(a["to"])
                state.buckets[expiry] = state.buckets.get(expiry, 0) + part
            self.seen_members.add(a["to"].lower())
        elif e.name == "Expired":
            state = m.member(a["member"])
            expiry = a["expiryMonth"]
            if expiry >= month:
                self.note("expiry before its month ended", e, f"expiry after {month_label(expiry)}", month_label(month))
            held = state.buckets.get(expiry, 0)
            if held != a["points"]:
                self.note("expired points", e, held, a["points"])
            state.buckets[expiry] = 0  # swept from the member; balances ignored it already
            self.swept[expiry] = self.swept.get(expiry, 0) + a["points"]
        elif e.name == "PointValueSet":
            self.point_value = (int(a["minorUnitsPerPoint"]), bytes(a["currency"]).decode())

    def _earned(self, e: LedgerEvent, month: int) -> None:
        a, m = e.args, self.model
        self.operations += 1
        partner = m.partners[a["partnerId"]]
        member = a["member"]
        key = member.lower()
        self.seen_members.add(key)
        state = m.member(key)
        cached = self._qualifying.get(key)
        qualifying = cached[1] if cached is not None and cached[0] == month else m.qualifying(key, month)
        tier = 0
        for i, (threshold, _) in enumerate(m.tiers):  # as PointsModel.tier_index
            if qualifying >= threshold:
                tier = i
        expected = m.points_for(partner, a["spend"], m.tiers[tier][1])
        points = a["points"]
        if expected != points:
            self.note("points of an earn", e, expected, points)
        expiry = NEVER if m.expiry_months == 0 else month + m.expiry_months
        if a["expiryMonth"] != expiry:
            self.note("expiry month of an earn", e, month_label(expiry), month_label(a["expiryMonth"]))
        if points > partner.allowance:
            self.note("issuance beyond the partner's allowance", e, partner.allowance, points)
        buckets, earned = state.buckets, state.earned
        buckets[a["expiryMonth"]] = buckets.get(a["expiryMonth"], 0) + points
        earned[month] = earned.get(month, 0) + points
        self._qualifying[key] = (month, qualifying + points)
        partner.allowance -= points
        partner.issued += points
        self.earns[(a["partnerId"], a["receiptRef"])] = (points, month, member)

    def _reversed(self, e: LedgerEvent, month: int) -> None:
        a, m = e.args, self.model
        self.operations += 1
        key = (a["partnerId"], a["earnReceiptRef"])
        earn = self.earns.get(key)
        if earn is None:
            self.note("reversal of an unknown earn", e, "an Earned event of this partner", "none")
            return
        issued, earn_month, member = earn
        done = self.reversed.get(key, 0) + a["points"]
        if done > issued:
            self.note("reversal above the original earn", e, issued, done)
        self.reversed[key] = done
        self._take(e, a["member"], a["points"], month)
        earned = m.member(member).earned
        earned[earn_month] = earned.get(earn_month, 0) - min(a["points"], earned.get(earn_month, 0))
        self._qualifying.pop(member.lower(), None)  # the earn's month counts less now
        partner = m.partners[a["partnerId"]]
        partner.allowance += a["points"]
        partner.reversed += a["points"]

    def _take(self, e: LedgerEvent, member: str, points: int, month: int) -> list[tuple[int, int]]:
        live = self.model.balance(member, month)
        if live < points:
            self.note("points spent beyond the balance", e, live, points)
        return self.model.take_earliest(member, points, month)


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
        latest = rpc(w3, "eth_blockNumber", [])
        to_block = int(latest, 16) if isinstance(latest, str) else int(latest)
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
            replay.apply(event, months[event.block_number])
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
            ("tier", model.tier_index(member, month), tier),
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
            where = f"stored receipt of operation {kept.operation_id} ({kept.kind} of partner {kept.partner_id})"
            found.append(
                Discrepancy("stored receipt does not hash to its reference", where, kept.receipt_ref, recomputed)
            )
    by_position = {(e.tx_hash.lower(), e.log_index): e for e in events if e.name in RESULT_EVENT.values()}
    matched: set[tuple[str, int]] = set()
    rows: set[str] = set()
    for op in index.operations:
        rows.add(op.id)
        where = f"operation {op.id} ({op.kind} of partner {op.partner_id})"
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
                    f"block {event.block_number} log {event.log_index} (tx {event.tx_hash})",
                    "an operation in the index",
                    "none",
                )
            )
    for operation_id, kept in stored.items():
        if operation_id not in rows:
            found.append(
                Discrepancy(
                    "stored receipt missing from the index",
                    f"operation {operation_id} ({kept.kind} of partner {kept.partner_id})",
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
        )
        for op in session.scalars(select(Operation).order_by(Operation.seq))
    ]
    receipts = [
        StoredDocument(r.operation_id, r.kind, r.partner_id, r.receipt_doc, r.receipt_ref)
        for r in session.scalars(select(StoredReceipt).order_by(StoredReceipt.seq))
    ]
    return GatewayIndex(operations, receipts)
