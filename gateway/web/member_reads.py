"""What the member page shows (gateway/web/pages.py renders it): a member found by member id
or address (also one it moved away from), its balance, tier, debt and expiry schedule from the
chain's views at one block, and its movements, which add up to the balance: the operations
still on their way from the index, then every event that moved its points, newest first.
Public on the chain already, but for partner names and the list of operations the gateway
accepted (never a stored receipt)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from eth_utils import to_checksum_address
from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.accounts.members import member_view
from gateway.app.runtime import Runtime
from gateway.chain.ledger import LedgerEvent
from gateway.core.errors import ErrorCode, NotFound
from gateway.db.models import Member, Operation, Partner
from gateway.operations.kinds import Kind, Status
from gateway.web.reads import (
    ADDRESS,
    MAX_QUERY_CHARS,
    MEMBER_ID,
    RECENT_OPERATIONS,
    BadInput,
    hex_text,
    time_of_block,
    times_of_blocks,
)
from gateway.web.upcoming import Upcoming, upcoming_changes


def find_member(session: Session, query: str, runtime: Runtime | None = None) -> Member:
    """A member by member id (as on the card) or by address; with `runtime`, also by an address
    the member moved away from (r2), followed through its `Migrated` events on the chain."""
    q = query.strip()
    if not q:
        raise BadInput("Type a member id (as printed on the card) or an address (0x and 40 hex digits).")
    if len(q) > MAX_QUERY_CHARS:
        raise BadInput("That is far longer than any member id or address.")
    if ADDRESS.match(q):
        address = to_checksum_address(q)
        member = session.scalar(select(Member).where(Member.address == address))
        if member is None and runtime is not None:
            member = _moved_from(runtime, session, address)
    elif MEMBER_ID.match(q):
        member = session.scalar(select(Member).where(Member.member_id == q))
    else:
        raise BadInput(
            "A member id has only letters, digits and . _ : - (at most 64); "
            "an address is 0x followed by 40 hexadecimal digits."
        )
    if member is None:
        raise NotFound("No member has this id or address in this network.", code=ErrorCode.UNKNOWN_MEMBER)
    return member


def _moved_from(runtime: Runtime, session: Session, address: str, hops: int = 8) -> Member | None:
    """The member now at the end of the migrations that started at `address` (the chain says
    where each went: `Migrated(from, to)`, `from` indexed), if the index knows it there."""
    from gateway.chain.events import EventDecoder, get_logs

    decoder = EventDecoder(runtime.ledger)
    head = runtime.chain.w3.eth.block_number
    for _ in range(hops):  # a migration's target never migrated before, so the chain has no loop
        topic = "0x" + bytes(12).hex() + address[2:].lower()
        logs = get_logs(
            runtime.chain.w3,
            runtime.ledger.address,
            runtime.ledger.deployment_block,
            head,
            topics=[decoder.topics["Migrated"], topic],
        )
        moved = [e for log in logs if (e := decoder.decode(log, frozenset({"Migrated"}))) is not None]
        if not moved:
            return None
        address = to_checksum_address(str(moved[-1].args["to"]))
        member = session.scalar(select(Member).where(Member.address == address))
        if member is not None:
            return member
    return None


@dataclass
class Movement:
    """One movement of a member's points: on the ledger (an event, with its proof), or an
    accepted operation still on its way there (not in the balance yet)."""

    # earn | award | redemption | refund | reversal | migration | expiry | debt (r2: a reversal's
    # part the member did not hold, +) | debt_repaid (r2: an issue's part that paid a debt, -) |
    # earlier (older ones, summed)
    kind: str
    partner: str
    points: int | None  # signed: + earned, awarded, refunded or moved in; - redeemed, reversed, expired or moved out
    status: str  # confirmed (on the ledger) | accepted | submitted
    accepted_at: datetime | None  # when the gateway accepted it (none for an expiry)
    spend_minor: int | None
    currency: str | None
    proof: str | None  # link to the proof page
    block_time: datetime | None = None  # when it reached the ledger


@dataclass
class MemberPage:
    member_id: str
    address: str
    balance: int
    block_number: int
    block_time: datetime
    tier: str
    qualifying_points: int
    next_tier: tuple[str, int] | None  # (name, points still to qualify)
    expiring: list[tuple[int, int]]  # (month index, points), earliest first
    movements: list[Movement]  # on its way first, then the ledger's newest first; those add up to the balance
    upcoming: list[Upcoming] = field(default_factory=list)  # programme changes under notice
    debt: int = 0  # (r2) points owed: reversals beyond the balance, paid by the next points issued


_SIGN = {"Earned": 1, "Awarded": 1, "Refunded": 1, "Redeemed": -1, "Reversed": -1, "Expired": -1, "Migrated": 1}
# (r2) A reversal's `points` are all it reversed, an issue's all it issued: the part of a
# reversal the member did not hold (its debt) is added back, the part of an issue that paid a
# debt taken off, so that the rows still add up to the balance.
_SIGN.update(DebtRecorded=1, DebtRepaid=-1)
_KIND = {
    "Earned": Kind.EARN.value,
    "Awarded": Kind.AWARD.value,
    "Redeemed": Kind.REDEMPTION.value,
    "Refunded": Kind.REFUND.value,
    "Reversed": Kind.REVERSAL.value,
    "Migrated": Kind.MIGRATION.value,
    "DebtRecorded": "debt",
    "DebtRepaid": "debt_repaid",
}
_CREDIT = {Kind.EARN.value, Kind.AWARD.value, Kind.REFUND.value}  # operations that add points


def signed_points(event: LedgerEvent, address: str) -> int:
    """The event's points as they moved this member's balance: a migration is + for the new
    address and - for the old one."""
    points = int(event.args["points"])
    if event.name == "Migrated":
        return points if str(event.args["to"]).lower() == address.lower() else -points
    return _SIGN[event.name] * points


def member_events(runtime: Runtime, address: str, to_block: int) -> list[LedgerEvent]:
    """Every event that moved the member's points (earned, awarded, redeemed, refunded, reversed,
    expired, migrated in or out), in chain order, read by the member's indexed topic."""
    from gateway.chain.events import EventDecoder, get_logs

    decoder = EventDecoder(runtime.ledger)
    member = "0x" + bytes(12).hex() + address[2:].lower()
    ledger, start = runtime.ledger, runtime.ledger.deployment_block
    # The member is the second indexed field of these (a migration's new address: `to`) ...
    moved = [
        decoder.topics[n]
        for n in ("Earned", "Awarded", "Redeemed", "Refunded", "Reversed", "Migrated", "DebtRecorded", "DebtRepaid")
    ]
    logs = get_logs(runtime.chain.w3, ledger.address, start, to_block, topics=[moved, None, member])  # type: ignore[list-item]
    # ... and the first of these (a migration's old address: `from`).
    first = [decoder.topics["Expired"], decoder.topics["Migrated"]]
    logs += get_logs(runtime.chain.w3, ledger.address, start, to_block, topics=[first, member])  # type: ignore[list-item]
    events = [e for log in logs if (e := decoder.decode(log, frozenset(_SIGN))) is not None]
    return sorted(events, key=lambda e: (e.block_number, e.log_index))


def member_page(runtime: Runtime, session: Session, member: Member) -> MemberPage:
    view = member_view(runtime, session, member_id=member.member_id)  # the chain's views at one block
    block = int(view["block_number"])
    # The next tier from the chain's own table (a scheduled tier change moves it), named from settings.
    (months, points), table = runtime.ledger.views([("expiringOf", (member.address,)), ("tiers", ())], block)
    names = [t.name for t in runtime.settings.coalition.tiers]
    index = int(view["tier_index"])
    following = (
        (names[index + 1] if index + 1 < len(names) else f"tier {index + 1}", int(table[index + 1][0]))
        if index + 1 < len(table)
        else None
    )
    partners = {p.id: p for p in session.scalars(select(Partner))}
    ops = list(
        session.scalars(
            select(Operation)
            # A refused operation never reaches the chain: it stays between the partner and the gateway.
            .where(Operation.member_id == member.member_id, Operation.status != Status.REJECTED)
        )
    )
    by_ref = {(op.kind, op.receipt_ref.lower()): op for op in ops}

    def partner(pid: int | None) -> str:
        return partners[pid].name if pid in partners else f"partner {pid}"

    # On its way: accepted, not on the ledger at this block yet (no part of the balance).
    movements = [
        Movement(
            kind=op.kind,
            partner=partner(op.partner_id),
            points=(1 if op.kind in _CREDIT else -1) * op.points if op.points is not None else None,
            status=op.status,
            accepted_at=op.created_at,
            spend_minor=op.amount_minor if op.kind == Kind.EARN else None,
            currency=op.currency if op.kind == Kind.EARN else None,
            proof=None,
        )
        for op in sorted(ops, key=lambda o: o.seq, reverse=True)
        if op.status != Status.CONFIRMED or op.block_number is None or op.block_number > block
    ]
    # On the ledger: every movement, expiry included, so that the rows add up to the balance.
    events = member_events(runtime, member.address, block)
    times = times_of_blocks(runtime, {e.block_number for e in events[-RECENT_OPERATIONS:]})
    shown = []
    for event in reversed(events[-RECENT_OPERATIONS:]):
        kind = _KIND.get(event.name, "expiry")
        ref = event.args.get("receiptRef")  # a migration has none
        looked_up = Kind.REVERSAL.value if event.name == "DebtRecorded" else kind  # (r2) its reversal's
        op = by_ref.get((looked_up, hex_text(ref).lower())) if ref is not None else None
        pid = event.args.get("partnerId")
        earned = event.name == "Earned"
        shown.append(
            Movement(
                kind=kind,
                partner=partner(pid) if pid is not None else "",
                points=signed_points(event, member.address),
                status=Status.CONFIRMED.value,
                accepted_at=op.created_at if op is not None else None,
                spend_minor=int(event.args["spend"]) if earned else None,
                currency=partners[pid].currency if earned and pid in partners else None,
                proof=f"/proof/{event.tx_hash}/{event.log_index}" + (f"?op={op.id}" if op is not None else ""),
                block_time=times.get(event.block_number),
            )
        )
    older = events[:-RECENT_OPERATIONS]
    if older:
        total = sum(signed_points(e, member.address) for e in older)
        shown.append(Movement("earlier", "", total, Status.CONFIRMED.value, None, None, None, None))
    block_time = time_of_block(runtime, block)
    names_by_id = {pid: p.name for pid, p in partners.items()}
    return MemberPage(
        member_id=member.member_id,
        address=member.address,
        balance=int(view["balance"]),
        block_number=block,
        block_time=block_time,
        tier=str(view["tier"]),
        qualifying_points=int(view["qualifying_points"]),
        next_tier=(following[0], max(0, following[1] - int(view["qualifying_points"]))) if following else None,
        expiring=[(int(m), int(p)) for m, p in zip(months, points, strict=True) if p],
        movements=movements + shown,
        upcoming=upcoming_changes(runtime, names_by_id, block, int(block_time.timestamp())),
        debt=int(view.get("debt", 0)),
    )
