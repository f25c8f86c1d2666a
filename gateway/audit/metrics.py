"""Programme metrics (SPEC section 5, r2) from chain events alone.

The figures a programme is run on, for any period [from, to) and coalition-wide or for one
partner: members active, new members, repeat-purchase rate, average days between purchases,
redemption and breakage rates, members at churn risk, liability, the flow matrix (points
earned at one partner and redeemed at another) and campaign results.

Every figure is a function of the ledger's events and their blocks' times, so a partner can
recompute the operator's numbers (docs/auditors.md has a standalone script that does). The
definitions, where the SPEC leaves room:
- a purchase is an `Earned` event; issuance is earns plus awards plus campaign bonuses;
- members active: earned or redeemed in the period (for a partner: at that partner);
- new members: the member's first earn ever (for a partner: its first earn there) is in the
  period;
- repeat-purchase rate: of the members with an earn in the period, the share with two or
  more; average days between purchases: the mean gap between a member's consecutive earns
  inside the period (for a partner: its earns there);
- redemption rate: points redeemed in the period, net of refunds (r2: a refund gives back
  the lots its redemption consumed and undoes their flows) / points issued in the period; breakage
  rate: points that expired in the period (their month ended inside it, swept or not) /
  points issued in the period; both coalition-wide or, for a partner, its own points: a
  point is attributed to the partner that issued it;
- which partner's points a redemption, reversal, transfer or expiry consumes: the contract
  consumes the earliest-expiring points first; inside one expiry month (one bucket on-chain)
  points are consumed in the order they were issued (first in, first out). This is the
  convention of the flow matrix and of per-partner breakage and liability;
- members at churn risk: a live balance at the period's end and no earn in the
  `churn_days` before it (for a partner: members who earned there, holding a live balance,
  with no earn there in those days);
- liability: live points at the period's end (for a partner: live points it issued), and
  their settlement value at the point value in force then. (r2) Member debt is not in it:
  balances never go negative, so a reversal beyond the balance takes what there is
  (`Reversed.points` minus the `DebtRecorded` before it) and the rest is shown apart as
  `debt_outstanding` (for a partner: the debt its reversals recorded); points issued or
  refunded to a debtor pay the oldest debt first (`DebtRepaid` before the issue), and only
  the rest becomes live. `points_reversed` and `points_issued` stay the events' whole points;
- (r2) awards (`Awarded`) are issued points, not purchases and not qualifying; a campaign
  bonus is issued points (inside `Earned.points`) and also shown as `points_bonus`;
- (r2) campaign results, per campaign id named by an earn in the period (for a partner: its
  earns): bonus points, purchases (earns naming it that got a bonus), earns named (all that
  named it, bonus or not), spend (of those purchases) and members reached (who got a bonus).

Longer than 400 lines: the replay and the figures read off it are one definition, kept
together so the auditor's script in docs/auditors.md can follow it top to bottom.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from gateway.chain.events import collector_paused
from gateway.chain.ledger import LedgerEvent
from gateway.points.rules import NEVER, month_of, month_start

DAY = 86_400
ZERO = "0x0000000000000000000000000000000000000000"
ISSUING = ("Earned", "Awarded")


@dataclass
class CampaignResult:
    campaign_id: int
    partner_id: int
    bonus: int = 0
    purchases: int = 0  # earns naming it that got a bonus
    named: int = 0  # every earn naming it, bonus or not
    spend: int = 0  # of the purchases that got a bonus
    members: int = 0  # members reached: who got a bonus from it

    def as_json(self) -> dict[str, Any]:
        return {
            "campaign_id": self.campaign_id,
            "partner_id": self.partner_id,
            "bonus_points": self.bonus,
            "purchases": self.purchases,
            "earns_named": self.named,
            "spend_minor": self.spend,
            "members_reached": self.members,
        }


@dataclass
class Metrics:
    period_from: int
    period_to: int
    partner_id: int | None
    churn_days: int
    point_value: int = 0
    currency: str = ""
    members_active: int = 0
    new_members: int = 0
    purchasers: int = 0
    repeat_purchasers: int = 0
    purchase_gaps: int = 0
    purchase_gap_seconds: int = 0
    issued: int = 0  # earns, awards and bonuses
    bonus: int = 0
    redeemed: int = 0
    reversed: int = 0
    expired: int = 0
    members_at_risk: int = 0
    liability_points: int = 0
    debt_outstanding: int = 0  # (r2) members' debt at the period's end: not in liability
    flows: dict[tuple[int, int], int] = field(default_factory=dict)  # (earned at, redeemed at) -> points
    campaigns: list[CampaignResult] = field(default_factory=list)

    @property
    def repeat_purchase_rate(self) -> float | None:
        return self.repeat_purchasers / self.purchasers if self.purchasers else None

    @property
    def average_days_between_purchases(self) -> float | None:
        return self.purchase_gap_seconds / self.purchase_gaps / DAY if self.purchase_gaps else None

    @property
    def redemption_rate(self) -> float | None:
        return self.redeemed / self.issued if self.issued else None

    @property
    def breakage_rate(self) -> float | None:
        return self.expired / self.issued if self.issued else None

    def as_json(self) -> dict[str, Any]:
        value = self.point_value
        return {
            "from": self.period_from,
            "to": self.period_to,
            "partner_id": self.partner_id,
            "churn_days": self.churn_days,
            "members_active": self.members_active,
            "new_members": self.new_members,
            "repeat_purchase_rate": _round(self.repeat_purchase_rate),
            "average_days_between_purchases": _round(self.average_days_between_purchases),
            "points_issued": self.issued,
            "points_bonus": self.bonus,
            "points_redeemed": self.redeemed,
            "points_reversed": self.reversed,
            "points_expired": self.expired,
            "redemption_rate": _round(self.redemption_rate),
            "breakage_rate": _round(self.breakage_rate),
            "members_at_churn_risk": self.members_at_risk,
            "liability_points": self.liability_points,
            "liability_value_minor": self.liability_points * value,
            "debt_outstanding": self.debt_outstanding,
            "point_value_minor": value,
            "currency": self.currency,
            "flows": [
                {"earned_at": a, "redeemed_at": b, "points": p, "value_minor": p * value}
                for (a, b), p in sorted(self.flows.items())
            ],
            "campaigns": [c.as_json() for c in self.campaigns],
        }


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 6)


@dataclass
class _Member:
    # expiry month -> lots [partner, points], oldest first (one on-chain bucket)
    buckets: dict[int, deque[list[int]]] = field(default_factory=dict)
    first_earn: dict[int, int] = field(default_factory=dict)  # partner (0: any) -> time
    last_earn: dict[int, int] = field(default_factory=dict)  # partner (0: any) -> time
    debts: deque[list[int]] = field(default_factory=deque)  # (r2) [recording partner, points], oldest first


class MetricsReplay:
    """Applies events in chain order, keeping each member's points as lots by issuing partner."""

    def __init__(self) -> None:
        self.members: dict[str, _Member] = {}
        self.point_value: tuple[int, str] = (0, "")
        # Everything below is logged with its time, so any period can be read off afterwards.
        self.earns: list[tuple[int, int, str, int, int]] = []  # (time, partner, member, points, bonus)
        self.issues: list[tuple[int, int, int]] = []  # (time, partner, points): awards
        self.redemptions: list[tuple[int, int, str, int]] = []  # (time, partner, member, points)
        self.reversals: list[tuple[int, int, int]] = []  # (time, partner, points)
        self.flows: list[tuple[int, int, int, int]] = []  # (time, earned at, redeemed at, points)
        # (time, campaign, partner, member, spend, bonus)
        self.campaign_earns: list[tuple[int, int, int, str, int, int]] = []
        self.refunds: list[tuple[int, int, int]] = []  # (time, partner, points) (r2)
        # (partner, redemption ref) -> the lots it consumed, for a refund to give back (r2).
        self._redeemed_lots: dict[tuple[int, bytes], list[tuple[int, int]]] = {}
        self._migration: tuple[str, str] | None = None  # a Migrated whose Transfer comes next
        self.moved: dict[str, str] = {}  # address -> the address it migrated to (r2): one member
        # (r2, debt) DebtRecorded / DebtRepaid points waiting for their Reversed / issue, by member.
        self._debt: dict[str, int] = {}
        self._repaid: dict[str, int] = {}
        self.campaign_partner: dict[int, int] = {}  # (r2) campaign id -> its partner

    def member(self, address: str) -> _Member:
        key = address.lower()
        state = self.members.get(key)
        if state is None:
            state = self.members[key] = _Member()
        return state

    def apply(self, e: LedgerEvent, t: int) -> None:
        a = e.args
        migration, self._migration = self._migration, None
        if e.name == "Earned":
            self._earned(a, t)
        elif e.name == "Awarded":
            points = int(a["points"])
            rest = points - self._repaid.pop(a["member"].lower(), 0)
            self._credit(a["member"], int(a["partnerId"]), rest, int(a.get("expiryMonth", NEVER)))
            self.issues.append((t, int(a["partnerId"]), points))
        elif e.name == "DebtRecorded":
            key, points = a["member"].lower(), int(a["points"])
            self._debt[key] = self._debt.get(key, 0) + points
            self.member(key).debts.append([int(a["partnerId"]), points])
        elif e.name == "DebtRepaid":
            key, points = a["member"].lower(), int(a["points"])
            self._repaid[key] = self._repaid.get(key, 0) + points
            debts = self.member(key).debts
            while points and debts:  # the oldest debt is paid first
                part = min(points, debts[0][1])
                debts[0][1] -= part
                points -= part
                if debts[0][1] == 0:
                    debts.popleft()
        elif e.name == "CampaignCreated":
            self.campaign_partner[int(a["campaignId"])] = int(a["partnerId"])
        elif e.name == "Redeemed":
            partner, points = int(a["partnerId"]), int(a["points"])
            self.redemptions.append((t, partner, a["member"].lower(), points))
            lots = self._redeemed_lots.setdefault((partner, bytes(a.get("receiptRef", b""))), [])
            for origin, part, _ in self._take(a["member"], points, month_of(t)):
                self.flows.append((t, origin, partner, part))
                lots.append((origin, part))
        elif e.name == "Refunded":
            self._refunded(a, t)
        elif e.name == "Migrated":
            source, target = a["from"].lower(), a["to"].lower()
            self.members[target] = self.members.pop(source) if source in self.members else _Member()
            self._migration, self.moved[source] = (source, target), target
        elif e.name == "Reversed":
            # `points` is the whole reversal; the part recorded as debt just before was not taken.
            self.reversals.append((t, int(a["partnerId"]), int(a["points"])))
            taken = int(a["points"]) - self._debt.pop(a["member"].lower(), 0)
            self._take(a["member"], taken, month_of(t))
        elif e.name == "Transfer" and a["from"] != ZERO and a["to"] != ZERO:
            if migration == (a["from"].lower(), a["to"].lower()):
                return  # the migration's own Transfer: the account moved whole already
            for origin, part, expiry in self._take(a["from"], int(a["value"]), month_of(t)):
                self._credit(a["to"], origin, part, expiry)
        elif e.name == "PointValueSet":
            self.point_value = (int(a["minorUnitsPerPoint"]), bytes(a["currency"]).decode())

    def _earned(self, a: dict[str, Any], t: int) -> None:
        # The hot path of a long history (nine events in ten): one member look-up, one lower().
        partner, key = int(a["partnerId"]), a["member"].lower()
        points = int(a["points"])
        bonus = int(a.get("bonus", 0))
        state = self.members.get(key)
        if state is None:
            state = self.members[key] = _Member()
        rest = points - self._repaid.pop(key, 0) if self._repaid else points  # (r2) a debt is paid first
        if rest > 0:
            _add_lot(state, partner, rest, int(a["expiryMonth"]))
        self.earns.append((t, partner, key, points, bonus))
        first, last = state.first_earn, state.last_earn
        if partner not in first:
            first[partner] = t
            first.setdefault(0, t)
        last[0] = last[partner] = t
        campaign = int(a.get("campaignId", 0))
        if campaign:
            self.campaign_earns.append((t, campaign, partner, key, int(a["spend"]), bonus))

    def _refunded(self, a: dict[str, Any], t: int) -> None:
        """(r2) Points given back of a redemption: the lots it consumed, last taken first, go
        back to the member (one expiry month, the event's) and their flows are undone."""
        partner, points = int(a["partnerId"]), int(a["points"])
        self.refunds.append((t, partner, points))
        repaid = self._repaid.pop(a["member"].lower(), 0)  # (r2) the part that paid a debt
        lots = self._redeemed_lots.get((partner, bytes(a["redemptionReceiptRef"])), [])
        while points and lots:
            origin, part = lots.pop()
            back = min(points, part)
            if back < part:
                lots.append((origin, part - back))
            paid = min(repaid, back)
            repaid -= paid
            if back > paid:
                self._credit(a["member"], origin, back - paid, int(a["expiryMonth"]))
            self.flows.append((t, origin, partner, -back))
            points -= back

    def _credit(self, member: str, partner: int, points: int, expiry: int) -> None:
        if points > 0:
            _add_lot(self.member(member), partner, points, expiry)

    def _take(self, member: str, points: int, month: int) -> list[tuple[int, int, int]]:
        """Consumes live points earliest expiry first, oldest lot first: (partner, points, expiry)."""
        buckets = self.member(member).buckets
        taken: list[tuple[int, int, int]] = []
        for expiry in sorted(e for e in buckets if e >= month):
            lots = buckets[expiry]
            while points and lots:
                lot = lots[0]
                part = min(points, lot[1])
                taken.append((lot[0], part, expiry))
                lot[1] -= part
                points -= part
                if lot[1] == 0:
                    lots.popleft()
            if not lots:
                del buckets[expiry]
            if not points:
                break
        return taken


def _add_lot(state: _Member, partner: int, points: int, expiry: int) -> None:
    lots = state.buckets.get(expiry)
    if lots is None:
        state.buckets[expiry] = deque(([partner, points],))
    elif lots and lots[-1][0] == partner:
        lots[-1][1] += points
    else:
        lots.append([partner, points])


def replay_until(events: Iterable[LedgerEvent], times: dict[int, int], until: int) -> MetricsReplay:
    """Replays the events of blocks timed before `until`."""
    replay = MetricsReplay()
    # The replay keeps a tuple per operation and a member per address, all alive to the end, and
    # makes no reference cycles: each full collection would walk them again for nothing (the
    # million-operation ledger: 31 s -> 18 s).
    with collector_paused():
        apply = replay.apply
        for event in events:
            t = times[event.block_number]
            if t >= until:
                break
            apply(event, t)
    return replay


def metrics_of(
    events: list[LedgerEvent],
    times: dict[int, int],
    *,
    period_from: int,
    period_to: int,
    partner_id: int | None = None,
    churn_days: int = 60,
    replay: MetricsReplay | None = None,
) -> Metrics:
    """The programme metrics of [period_from, period_to) from events in chain order and their
    blocks' timestamps; `replay` may be one already run up to `period_to`."""
    r = replay if replay is not None else replay_until(events, times, period_to)
    with collector_paused():  # sets and lists over every operation of the period
        return _figures(r, period_from, period_to, partner_id, churn_days)


def _figures(r: MetricsReplay, period_from: int, period_to: int, partner_id: int | None, churn_days: int) -> Metrics:
    value, currency = r.point_value
    m = Metrics(period_from, period_to, partner_id, churn_days, value, currency)

    def mine(partner: int) -> bool:
        return partner_id is None or partner == partner_id

    def inside(t: int) -> bool:
        return period_from <= t < period_to

    def who(address: str) -> str:  # a member is one member across its migrations
        while address in r.moved:
            address = r.moved[address]
        return address

    active: set[str] = set()
    purchases: dict[str, list[int]] = {}
    for t, partner, member, points, bonus in r.earns:
        if period_from <= t < period_to and (partner_id is None or partner == partner_id):
            m.issued += points
            m.bonus += bonus
            if r.moved:
                member = who(member)
            active.add(member)
            times = purchases.get(member)
            if times is None:
                purchases[member] = [t]
            else:
                times.append(t)
    for t, partner, points in r.issues:
        if inside(t) and mine(partner):
            m.issued += points
    for t, partner, member, points in r.redemptions:
        if inside(t) and mine(partner):
            m.redeemed += points
            active.add(who(member))
    for t, partner, points in r.refunds:  # redemptions are counted net of refunds (r2)
        if inside(t) and mine(partner):
            m.redeemed -= points
    for t, partner, points in r.reversals:
        if inside(t) and mine(partner):
            m.reversed += points
    m.members_active = len(active)
    m.purchasers = len(purchases)
    m.repeat_purchasers = sum(1 for ts in purchases.values() if len(ts) >= 2)
    for ts in purchases.values():
        m.purchase_gaps += len(ts) - 1
        m.purchase_gap_seconds += ts[-1] - ts[0]  # the sum of consecutive gaps

    key = 0 if partner_id is None else partner_id
    end_month, horizon = month_of(period_to), period_to - churn_days * DAY
    for state in r.members.values():
        first = state.first_earn.get(key)
        if first is not None and inside(first):
            m.new_members += 1
        live = 0
        for expiry, lots in state.buckets.items():
            points = sum(p for origin, p in lots if mine(origin))
            if expiry >= end_month:
                live += points
            elif expiry != NEVER and period_from < month_start(expiry + 1) <= period_to:
                m.expired += points  # its month ended inside the period
        m.liability_points += live
        m.debt_outstanding += sum(p for partner, p in state.debts if mine(partner))
        last = state.last_earn.get(key)
        if live and (last is None or last < horizon) and (partner_id is None or last is not None):
            m.members_at_risk += 1

    for t, origin, redeemed_at, points in r.flows:
        if inside(t) and (partner_id is None or partner_id in (origin, redeemed_at)):
            m.flows[(origin, redeemed_at)] = m.flows.get((origin, redeemed_at), 0) + points

    campaigns: dict[int, tuple[CampaignResult, set[str]]] = {}
    for t, campaign, partner, member, spend, bonus in r.campaign_earns:
        if inside(t) and mine(partner):
            result, reached = campaigns.setdefault(campaign, (CampaignResult(campaign, partner), set()))
            result.named += 1
            if bonus:
                result.bonus += bonus
                result.purchases += 1
                result.spend += spend
                reached.add(who(member))
    for result, reached in campaigns.values():
        result.members = len(reached)
    m.campaigns = [campaigns[c][0] for c in sorted(campaigns)]
    return m


def monthly_metrics(
    events: list[LedgerEvent],
    times: dict[int, int],
    *,
    first_month: int,
    last_month: int,
    partner_id: int | None = None,
    churn_days: int = 60,
) -> list[tuple[int, Metrics]]:
    """Metrics of each calendar month in [first_month, last_month]; the last one ends at the
    latest block time given, if that is earlier than the month's end."""
    rows = []
    end_of_history = max(times.values()) + 1 if times else month_start(last_month + 1)
    # One replay, read off at each month's end (a replay per month cost the months times the
    # history: minutes for a million operations over two years).
    replay = MetricsReplay()
    ordered = iter(events)
    waiting = next(ordered, None)
    with collector_paused():
        for month in range(first_month, last_month + 1):
            period_to = min(month_start(month + 1), max(end_of_history, month_start(month) + 1))
            while waiting is not None and (t := times[waiting.block_number]) < period_to:
                replay.apply(waiting, t)
                waiting = next(ordered, None)
            figures = metrics_of(
                events,
                times,
                period_from=month_start(month),
                period_to=period_to,
                partner_id=partner_id,
                churn_days=churn_days,
                replay=replay,
            )
            rows.append((month, figures))
    return rows
