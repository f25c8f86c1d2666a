"""Chain-only audit: replay every ledger event with the plain-Python rules and compare.

An auditor needs only an RPC endpoint and the contract's address (and deployment block).
Every event from the deployment block is fetched (paged eth_getLogs), replayed into the
rules model of gateway/ledger/rules.py, and the result compared with the contract's own
views at the same block: every member's balance, qualifying points and tier, the supply,
and each partner's issued/reversed/redeemed totals and allowance. Points of each earn are
recomputed from the spend, the partner's rate and the member's tier at that moment.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from web3 import EthereumTesterProvider, Web3

from gateway.chain.ledger import Ledger, LedgerEvent, rpc
from gateway.db.models import Operation
from gateway.ledger.rules import BPS, NEVER, MemberModel, PartnerModel, PointsModel, month_label, month_of

ZERO = "0x0000000000000000000000000000000000000000"
PAGE_BLOCKS = 2_000


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


def get_logs(
    w3: Web3,
    address: str,
    from_block: int,
    to_block: int,
    *,
    topics: list[str | None] | None = None,
    page: int = PAGE_BLOCKS,
) -> list[Any]:
    """Raw logs of `address` in [from_block, to_block], in pages of `page` blocks."""
    logs: list[Any] = []
    start = from_block
    while start <= to_block:
        end = min(start + page - 1, to_block)
        query: dict[str, Any] = {"address": address, "fromBlock": start, "toBlock": end}
        if topics is not None:
            query["topics"] = topics
        if isinstance(w3.provider, EthereumTesterProvider):
            # eth-tester wants web3's formatting of the filter; a real node takes it raw.
            logs += w3.eth.get_logs(query)  # type: ignore[arg-type]
        else:
            logs += rpc(w3, "eth_getLogs", [{**query, "fromBlock": hex(start), "toBlock": hex(end)}])
        start = end + 1
    return logs


def fetch_events(
    w3: Web3, ledger: Ledger, from_block: int, to_block: int, progress: Callable[[int, int], None] | None = None
) -> list[LedgerEvent]:
    events: list[LedgerEvent] = []
    start = from_block
    while start <= to_block:
        end = min(start + PAGE_BLOCKS - 1, to_block)
        logs = get_logs(w3, ledger.address, start, end)
        events += [e for log in logs if (e := ledger.decode_log(log)) is not None]
        if progress:
            progress(end - from_block + 1, to_block - from_block + 1)
        start = end + 1
    events.sort(key=lambda e: (e.block_number, e.log_index))
    return events


def _timestamps(w3: Web3, blocks: set[int]) -> dict[int, int]:
    out = {}
    for number in sorted(blocks):
        block = rpc(w3, "eth_getBlockByNumber", [hex(number), False])
        ts = block["timestamp"]
        out[number] = int(ts, 16) if isinstance(ts, str) else int(ts)
    return out


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

    def note(self, kind: str, event: LedgerEvent, expected: Any, found: Any) -> None:
        where = f"block {event.block_number} log {event.log_index} (tx {event.tx_hash})"
        self.discrepancies.append(Discrepancy(kind, where, expected, found))

    def apply(self, e: LedgerEvent, month: int) -> None:
        a, m = e.args, self.model
        if e.name == "PartnerAdded":
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
        elif e.name == "Earned":
            self._earned(e, month)
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
        self.seen_members.add(member.lower())
        multiplier = m.tiers[m.tier_index(member, month)][1]
        expected = m.points_for(partner, a["spend"], multiplier)
        if expected != a["points"]:
            self.note("points of an earn", e, expected, a["points"])
        expiry = NEVER if m.expiry_months == 0 else month + m.expiry_months
        if a["expiryMonth"] != expiry:
            self.note("expiry month of an earn", e, month_label(expiry), month_label(a["expiryMonth"]))
        points = a["points"]
        if points > partner.allowance:
            self.note("issuance beyond the partner's allowance", e, partner.allowance, points)
        state: MemberModel = m.member(member)
        state.buckets[a["expiryMonth"]] = state.buckets.get(a["expiryMonth"], 0) + points
        state.earned[month] = state.earned.get(month, 0) + points
        partner.allowance -= points
        partner.issued += points
        self.earns[(a["partnerId"], bytes(a["receiptRef"]))] = (points, month, member)

    def _reversed(self, e: LedgerEvent, month: int) -> None:
        a, m = e.args, self.model
        self.operations += 1
        key = (a["partnerId"], bytes(a["earnReceiptRef"]))
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
        partner = m.partners[a["partnerId"]]
        partner.allowance += a["points"]
        partner.reversed += a["points"]

    def _take(self, e: LedgerEvent, member: str, points: int, month: int) -> list[tuple[int, int]]:
        live = self.model.balance(member, month)
        if live < points:
            self.note("points spent beyond the balance", e, live, points)
        return self.model.take_earliest(member, points, month)


IndexSource = list["IndexedOperation"] | Callable[[], list["IndexedOperation"]]
INDEX_LAG_SECONDS = 1.0


def verify_chain(
    w3: Web3,
    ledger: Ledger,
    *,
    from_block: int,
    to_block: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    index: IndexSource | None = None,
    stage: Callable[[str], None] | None = None,
) -> AuditReport:
    """Replays [from_block, to_block] and compares with the contract's views at to_block;
    with `index`, also matches the gateway's operations and receipts with the events.

    `index` may be a function reading a live gateway's index: it is read after the events
    (so the submitter has recorded what was mined in the audited blocks) and, if an event
    then has no row, read once more a moment later before that is called a discrepancy.
    `stage` hears the name of each step as it starts."""
    say = stage or (lambda _name: None)
    if to_block is None:
        latest = rpc(w3, "eth_blockNumber", [])
        to_block = int(latest, 16) if isinstance(latest, str) else int(latest)
    say("reading events")
    events = fetch_events(w3, ledger, from_block, to_block, progress)
    say("replaying")
    times = _timestamps(w3, {e.block_number for e in events} | {to_block})
    replay = Replay()
    for event in events:
        replay.apply(event, month_of(times[event.block_number]))
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
    values = ledger.views(calls, to_block)
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
    if isinstance(index, list):
        report.index_operations = len(index)
        return verify_index(events, index, to_block=to_block)
    rows = index()
    found = verify_index(events, rows, to_block=to_block)
    if any(d.kind == "event with no index row" for d in found):
        time.sleep(INDEX_LAG_SECONDS)  # the submitter may not have recorded the newest batch yet
        rows = index()
        found = verify_index(events, rows, to_block=to_block)
    report.index_operations = len(rows)
    return found


# ------------------------------------------------------------------ the gateway's index

RESULT_EVENT = {"earn": "Earned", "redemption": "Redeemed", "reversal": "Reversed"}


@dataclass(frozen=True)
class IndexedOperation:
    """An operation as the gateway's database holds it (only what the audit compares)."""

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


def verify_index(
    events: list[LedgerEvent], operations: list[IndexedOperation], *, to_block: int | None = None
) -> list[Discrepancy]:
    """Matches the index one to one with the chain's domain events, and every stored receipt
    with the hash its event carries (recomputed from the stored document, not copied).

    An operation mined but not yet deep enough to be confirmed is matched like a confirmed
    one; one mined after `to_block` (the audited range) is left for the next audit."""
    from eth_utils import keccak

    found: list[Discrepancy] = []
    by_position = {(e.tx_hash.lower(), e.log_index): e for e in events if e.name in RESULT_EVENT.values()}
    matched: set[tuple[str, int]] = set()
    for op in operations:
        where = f"operation {op.id} ({op.kind} of partner {op.partner_id})"
        recomputed = "0x" + keccak(op.receipt_doc.encode()).hex()
        if recomputed != op.receipt_ref:
            found.append(
                Discrepancy("stored receipt does not hash to its reference", where, op.receipt_ref, recomputed)
            )
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
    return found


def indexed_operations(session: Session) -> list[IndexedOperation]:
    """The gateway's operations, as the audit compares them."""
    return [
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
