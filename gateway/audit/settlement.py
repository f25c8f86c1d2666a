"""The settlement statement of SPEC section 5, computed from chain events alone.

For a period [from, to): per partner the points it issued, reversed and had redeemed at it,
and the net amount (issued - reversed - redeemed, at the point value: positive, the partner
owes the coalition); the points that expired in the period (breakage); the outstanding
liability at the start and the end. It balances: the sum of net amounts equals the change
in liability plus breakage, valued at the point value. Expiry happens at the end of a month,
so points expiring at the end of the month before `to` are breakage of this period.
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass, field
from typing import Any

from web3 import Web3

from gateway.audit.verify import Replay
from gateway.chain.events import fetch_events, timestamps
from gateway.chain.ledger import Ledger, LedgerEvent, rpc
from gateway.points.rules import NEVER, month_of, month_start


@dataclass
class PartnerLine:
    partner_id: int
    currency: str
    issued: int
    reversed: int
    redeemed: int
    net_points: int
    net_amount: int


@dataclass
class Statement:
    period_from: int
    period_to: int
    point_value: int
    currency: str
    partners: list[PartnerLine] = field(default_factory=list)
    breakage_points: int = 0
    liability_start_points: int = 0
    liability_end_points: int = 0

    @property
    def net_points(self) -> int:
        return sum(p.net_points for p in self.partners)

    @property
    def balanced(self) -> bool:
        return self.net_points == self.liability_end_points - self.liability_start_points + self.breakage_points

    def as_json(self) -> dict[str, Any]:
        value = self.point_value
        return {
            "period": {"from": self.period_from, "to": self.period_to},
            "point_value": {"minor_units_per_point": value, "currency": self.currency},
            "partners": [asdict(p) for p in self.partners],
            "breakage": {"points": self.breakage_points, "amount": self.breakage_points * value},
            "liability": {
                "start_points": self.liability_start_points,
                "end_points": self.liability_end_points,
                "start_amount": self.liability_start_points * value,
                "end_amount": self.liability_end_points * value,
            },
            "net_amount_total": self.net_points * value,
            "balanced": self.balanced,
        }

    def as_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(
            [
                "partner_id",
                "issued",
                "reversed",
                "redeemed",
                "net_points",
                f"net_amount_minor_{self.currency or 'units'}",
            ]
        )
        for p in self.partners:
            writer.writerow([p.partner_id, p.issued, p.reversed, p.redeemed, p.net_points, p.net_amount])
        writer.writerow(["breakage", "", "", "", self.breakage_points, self.breakage_points * self.point_value])
        writer.writerow(
            ["liability_start", "", "", "", self.liability_start_points, self.liability_start_points * self.point_value]
        )
        writer.writerow(
            ["liability_end", "", "", "", self.liability_end_points, self.liability_end_points * self.point_value]
        )
        return out.getvalue()


def _expired_by(replay: Replay, t: int) -> int:
    """Points expired by time t: buckets whose month ended at or before t (swept or not)."""
    months: dict[int, int] = dict(replay.swept)
    for state in replay.model.members.values():
        for expiry, points in state.buckets.items():
            months[expiry] = months.get(expiry, 0) + points
    return sum(p for e, p in months.items() if e != NEVER and month_start(e + 1) <= t)


def settlement(w3: Web3, ledger: Ledger, *, period_from: int, period_to: int, from_block: int) -> Statement:
    latest = rpc(w3, "eth_blockNumber", [])
    to_block = int(latest, 16) if isinstance(latest, str) else int(latest)
    events = fetch_events(w3, ledger, from_block, to_block)
    times = timestamps(w3, {e.block_number for e in events})
    return statement_of(events, times, period_from=period_from, period_to=period_to)


def statement_of(events: list[LedgerEvent], times: dict[int, int], *, period_from: int, period_to: int) -> Statement:
    """The statement from events already fetched (in chain order) and their blocks' timestamps."""
    replay = Replay()
    start_totals: dict[int, tuple[int, int, int]] | None = None
    liability_start = 0
    for event in events:
        t = times[event.block_number]
        if t >= period_to:
            break
        if t >= period_from and start_totals is None:
            start_totals = {pid: (p.issued, p.reversed, p.redeemed) for pid, p in replay.model.partners.items()}
            liability_start = replay.model.total_supply(month_of(period_from))
        replay.apply(event, month_of(t))
    if start_totals is None:  # no event inside the period
        start_totals = {pid: (p.issued, p.reversed, p.redeemed) for pid, p in replay.model.partners.items()}
        liability_start = replay.model.total_supply(month_of(period_from))
    value, currency = replay.point_value
    statement = Statement(period_from, period_to, value, currency)
    for pid in sorted(replay.model.partners):
        p = replay.model.partners[pid]
        issued0, reversed0, redeemed0 = start_totals.get(pid, (0, 0, 0))
        issued, reversed_, redeemed = p.issued - issued0, p.reversed - reversed0, p.redeemed - redeemed0
        net = issued - reversed_ - redeemed
        statement.partners.append(PartnerLine(pid, p.currency, issued, reversed_, redeemed, net, net * value))
    statement.liability_start_points = liability_start
    statement.liability_end_points = replay.model.total_supply(month_of(period_to))
    statement.breakage_points = _expired_by(replay, period_to) - _expired_by(replay, period_from)
    return statement
