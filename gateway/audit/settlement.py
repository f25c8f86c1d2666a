"""The settlement statement of SPEC section 5 (revision 2), computed from chain events alone.

For a period [from, to), per partner: the points it issued (earns, awards and campaign
bonuses; `awarded` and `bonus` are the parts awards and bonuses issued), reversed, had
redeemed at it and refunded of those redemptions, and the net amount: what it owes for what it
issued, at its issue price, net of reversals (credited at the price of the issue they take
back), less what it is owed for what was redeemed at it, at its redemption price, net of refunds
(at the price of the redemption they give back). A partner's price 0 means the coalition's
point value at the time (`PartnerPricesSet`, `PointValueSet`, both under the notice period).

The operator's line is what the coalition keeps: the price spread (each movement's price less
the point value at the time), breakage (points expired in the period, at the point value when
they expired), less the revaluation of the outstanding points when the point value changed.
The statement balances to the unit, in points and in money:
  sum of net points  = liability at the end - liability at the start + breakage
  sum of net amounts = value of the liability at the end - at the start + the operator's line
Each side is computed on its own (the partners' lines from their movements, the liability from
the rules model's balances, breakage from the expiring buckets), so the check is a real one.

Debt (r2): a reversal beyond its holder's balance counts in full on the partner's line, but
only what the holder had leaves the supply; the rest is the holder's debt, which later issues
pay before they reach a balance. Outstanding debt is points owed to the coalition, so the
balance check is on the net liability (supply less outstanding debt), at the start and the end,
and the revaluation is of that net liability:
  sum of net points  = net liability at the end - at the start + breakage
  sum of net amounts = its value at the end - at the start + the operator's line
The statement shows debt recorded and repaid in the period (`DebtRecorded`, `DebtRepaid`) and
the outstanding debt at the start and the end; recorded - repaid = end - start (a migration
moves a debt, never changes the total).
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass, field
from typing import Any

from web3 import Web3

from gateway.audit.verify import Replay
from gateway.chain.events import fetch_events, timestamps
from gateway.chain.ledger import Ledger, LedgerEvent
from gateway.chain.reads import ChainReads
from gateway.points.rules import NEVER, month_of, month_start

_DEBT_EVENTS = {"DebtRecorded": "debt_recorded", "DebtRepaid": "debt_repaid"}


@dataclass
class PartnerLine:
    partner_id: int
    currency: str
    issued: int = 0  # all points it issued: earned, awarded and bonus
    awarded: int = 0
    bonus: int = 0  # campaign bonuses: the `bonus` of its `Earned` events (included in `issued`)
    reversed: int = 0
    redeemed: int = 0
    refunded: int = 0
    net_points: int = 0  # issued - reversed - redeemed + refunded
    owes: int = 0  # for issued net of reversed, at its issue prices
    owed: int = 0  # for redeemed net of refunded, at its redemption prices
    net_amount: int = 0  # owes - owed: positive, the partner pays the coalition
    issue_price: int = 0  # in force at the end of the period (0: the point value)
    redemption_price: int = 0


@dataclass
class OperatorLine:
    spread: int = 0
    breakage: int = 0  # the amount of the statement's breakage points
    revaluation: int = 0  # the outstanding points' value change when the point value changed

    @property
    def total(self) -> int:
        return self.spread + self.breakage - self.revaluation


@dataclass
class Statement:
    period_from: int
    period_to: int
    point_value: int  # at the end of the period
    currency: str
    partners: list[PartnerLine] = field(default_factory=list)
    breakage_points: int = 0
    liability_start_points: int = 0
    liability_end_points: int = 0
    point_value_start: int = 0
    operator: OperatorLine = field(default_factory=OperatorLine)
    debt_recorded: int = 0
    debt_repaid: int = 0
    debt_start_points: int = 0  # outstanding at the start of the period (r2)
    debt_end_points: int = 0

    @property
    def net_points(self) -> int:
        return sum(p.net_points for p in self.partners)

    @property
    def net_amount(self) -> int:
        return sum(p.net_amount for p in self.partners)

    @property
    def liability_start_amount(self) -> int:
        return self.liability_start_points * self.point_value_start

    @property
    def liability_end_amount(self) -> int:
        return self.liability_end_points * self.point_value

    @property
    def balanced(self) -> bool:
        # Net of outstanding debt (r2): points owed are a claim, not a liability.
        start = self.liability_start_points - self.debt_start_points
        end = self.liability_end_points - self.debt_end_points
        points = self.net_points == end - start + self.breakage_points
        money = self.net_amount == end * self.point_value - start * self.point_value_start + self.operator.total
        debt = self.debt_recorded - self.debt_repaid == self.debt_end_points - self.debt_start_points
        return points and money and debt

    def as_json(self) -> dict[str, Any]:
        return {
            "period": {"from": self.period_from, "to": self.period_to},
            "point_value": {
                "minor_units_per_point": self.point_value,
                "at_start": self.point_value_start,
                "currency": self.currency,
            },
            "partners": [asdict(p) for p in self.partners],
            "breakage": {"points": self.breakage_points, "amount": self.operator.breakage},
            "debt": {
                "recorded": self.debt_recorded,
                "repaid": self.debt_repaid,
                "start_points": self.debt_start_points,
                "end_points": self.debt_end_points,
            },
            "operator": {**asdict(self.operator), "total": self.operator.total},
            "liability": {
                "start_points": self.liability_start_points,
                "end_points": self.liability_end_points,
                "start_amount": self.liability_start_amount,
                "end_amount": self.liability_end_amount,
            },
            "net_points_total": self.net_points,
            "net_amount_total": self.net_amount,
            "balanced": self.balanced,
        }

    def as_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out)
        columns = ["issued", "awarded", "bonus", "reversed", "redeemed", "refunded", "net_points"]
        writer.writerow(["partner_id", *columns, f"net_amount_minor_{self.currency or 'units'}"])
        for p in self.partners:
            writer.writerow([p.partner_id, *(getattr(p, c) for c in columns), p.net_amount])
        blank = [""] * (len(columns) - 1)
        writer.writerow(["breakage", *blank, self.breakage_points, self.operator.breakage])
        writer.writerow(["debt_recorded", *blank, self.debt_recorded, ""])
        writer.writerow(["debt_repaid", *blank, self.debt_repaid, ""])
        writer.writerow(["debt_start", *blank, self.debt_start_points, ""])
        writer.writerow(["debt_end", *blank, self.debt_end_points, ""])
        writer.writerow(["operator_spread", *blank, "", self.operator.spread])
        writer.writerow(["operator_revaluation", *blank, "", -self.operator.revaluation])
        writer.writerow(["operator_total", *blank, "", self.operator.total])
        writer.writerow(["liability_start", *blank, self.liability_start_points, self.liability_start_amount])
        writer.writerow(["liability_end", *blank, self.liability_end_points, self.liability_end_amount])
        return out.getvalue()


def settlement(w3: Web3, ledger: Ledger, *, period_from: int, period_to: int, from_block: int) -> Statement:
    to_block = ChainReads.of(w3).head()
    events = fetch_events(w3, ledger, from_block, to_block)
    times = timestamps(w3, {e.block_number for e in events})
    return statement_of(events, times, period_from=period_from, period_to=period_to)


class _Prices:
    """The point value and each partner's prices as they change, event by event."""

    def __init__(self) -> None:
        self.value_changes: list[tuple[int, int]] = [(0, 0)]  # (time, point value) in order
        self.partner: dict[int, tuple[int, int]] = {}  # partner -> (issue, redemption); 0: the value
        self.issued_at: dict[tuple[int, bytes], int] = {}  # (partner, receipt ref) -> price paid
        self.redeemed_at: dict[tuple[int, bytes], int] = {}

    @property
    def value(self) -> int:
        return self.value_changes[-1][1]

    def value_before(self, moment: int) -> int:
        """The point value in force just before `moment` (points expire at a month's end,
        before anything of the next month happens)."""
        return next((v for t, v in reversed(self.value_changes) if t < moment), 0)

    def issue(self, partner_id: int) -> int:
        return self.partner.get(partner_id, (0, 0))[0] or self.value

    def redemption(self, partner_id: int) -> int:
        return self.partner.get(partner_id, (0, 0))[1] or self.value


def statement_of(events: list[LedgerEvent], times: dict[int, int], *, period_from: int, period_to: int) -> Statement:
    """The statement from events already fetched (in chain order) and their blocks' timestamps."""
    replay, prices = Replay(), _Prices()
    lines: dict[int, PartnerLine] = {}
    operator = OperatorLine()
    debt = {"debt_recorded": 0, "debt_repaid": 0}
    started = False
    liability_start = value_start = debt_start = 0
    for event in events:
        t = times[event.block_number]
        if t >= period_to:
            break
        inside = t >= period_from
        if inside and not started:
            started, liability_start, value_start = True, replay.model.total_supply(month_of(period_from)), prices.value
            debt_start = replay.model.total_debt()
        a = event.args
        if event.name == "PointValueSet":
            new = int(a["minorUnitsPerPoint"])
            if inside:  # what the outstanding points (net of debt, r2) are worth changes with it
                net = replay.model.total_supply(month_of(t)) - replay.model.total_debt()
                operator.revaluation += net * (new - prices.value)
            prices.value_changes.append((t, new))
        elif event.name == "PartnerPricesSet":
            prices.partner[int(a["partnerId"])] = (int(a["issuePrice"]), int(a["redemptionPrice"]))
        elif event.name in ("Earned", "Awarded"):
            prices.issued_at[(a["partnerId"], bytes(a["receiptRef"]))] = prices.issue(a["partnerId"])
        elif event.name == "Redeemed":
            prices.redeemed_at[(a["partnerId"], bytes(a["receiptRef"]))] = prices.redemption(a["partnerId"])
        if inside:
            _movement(event, lines, prices, operator, debt, replay)
        replay.apply(event, month_of(t), t)
    if not started:  # no event inside the period
        liability_start, value_start = replay.model.total_supply(month_of(period_from)), prices.value
        debt_start = replay.model.total_debt()
    statement = Statement(period_from, period_to, prices.value, replay.point_value[1])
    statement.point_value_start, statement.operator = value_start, operator
    statement.debt_recorded, statement.debt_repaid = debt["debt_recorded"], debt["debt_repaid"]
    statement.debt_start_points, statement.debt_end_points = debt_start, replay.model.total_debt()
    for pid in sorted(replay.model.partners):
        line = lines.get(pid) or PartnerLine(pid, replay.model.partners[pid].currency)
        line.currency = replay.model.partners[pid].currency
        line.net_points = line.issued - line.reversed - line.redeemed + line.refunded
        line.net_amount = line.owes - line.owed
        line.issue_price, line.redemption_price = prices.partner.get(pid, (0, 0))
        statement.partners.append(line)
    statement.liability_start_points = liability_start
    statement.liability_end_points = replay.model.total_supply(month_of(period_to))
    expired = _expired_in(replay, period_from, period_to)
    statement.breakage_points = sum(expired.values())
    operator.breakage = sum(points * prices.value_before(month_start(e + 1)) for e, points in expired.items())
    return statement


def _movement(
    e: LedgerEvent,
    lines: dict[int, PartnerLine],
    prices: _Prices,
    operator: OperatorLine,
    debt: dict[str, int],
    replay: Replay,
) -> None:
    """One event of the period on its partner's line and the operator's spread."""
    a = e.args
    if e.name in _DEBT_EVENTS:
        debt[_DEBT_EVENTS[e.name]] += int(a.get("points", 0))
        return
    if e.name not in ("Earned", "Awarded", "Reversed", "Redeemed", "Refunded"):
        return
    pid, points, value = int(a["partnerId"]), int(a["points"]), prices.value
    line = lines.get(pid)
    if line is None:
        line = lines[pid] = PartnerLine(
            pid, replay.model.partners[pid].currency if pid in replay.model.partners else ""
        )
    if e.name in ("Earned", "Awarded"):
        price = prices.issued_at[(pid, bytes(a["receiptRef"]))]
        line.issued += points
        line.awarded += points if e.name == "Awarded" else 0
        line.bonus += int(a.get("bonus", 0))
        line.owes += points * price
        operator.spread += points * (price - value)
    elif e.name == "Reversed":
        # Credited at the price the issue it takes back was paid at.
        price = prices.issued_at.get((pid, bytes(a["earnReceiptRef"])), prices.issue(pid))
        line.reversed += points
        line.owes -= points * price
        operator.spread -= points * (price - value)
    elif e.name == "Redeemed":
        price = prices.redeemed_at[(pid, bytes(a["receiptRef"]))]
        line.redeemed += points
        line.owed += points * price
        operator.spread -= points * (price - value)
    else:  # Refunded: charged back at the price the redemption was paid at
        price = prices.redeemed_at.get((pid, bytes(a["redemptionReceiptRef"])), prices.redemption(pid))
        line.refunded += points
        line.owed -= points * price
        operator.spread += points * (price - value)


def _expired_in(replay: Replay, period_from: int, period_to: int) -> dict[int, int]:
    """Points expired in the period by expiry month: buckets whose month ended inside it."""
    months: dict[int, int] = dict(replay.swept)
    for state in replay.model.members.values():
        for expiry, points in state.buckets.items():
            months[expiry] = months.get(expiry, 0) + points
    return {e: p for e, p in months.items() if e != NEVER and p and period_from < month_start(e + 1) <= period_to}
