"""The audit's replay: every ledger event applied, in order, to the plain-Python rules model
(gateway/points/rules.py), noting each place where the chain disagrees with the rules.

It knows revision 2: awards (issued from the allowance, never qualifying points), assigned
tiers (the higher of assigned and earned, at the block's time), migrations (a member's whole
account moves; a later reversal of an earn credited to the old address takes its points where
they are now), refunds of redemptions (capped, never already expired), scheduled changes
(their effect arrives as the events of the change applied) and member debt: a `DebtRecorded`
comes just before the `Reversed` whose shortfall it is (only under the debt policy, and only
what the holder lacked), a `DebtRepaid` just before the `Earned`, `Awarded` or `Refunded`
whose points paid it (never more than the debt or the points); campaigns (`CampaignCreated`,
then each `Earned` naming one: its bonus recomputed from the terms, the block's time, the
member's tier and the spend, within the budget left; never qualifying points; a reversal
takes an earn's bonus back first).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.chain.campaigns import Campaign
from gateway.chain.ledger import LedgerEvent
from gateway.points.rules import BPS, NEVER, MemberModel, PartnerModel, PointsModel, month_label

ZERO = "0x0000000000000000000000000000000000000000"


@dataclass
class Discrepancy:
    kind: str
    where: str
    expected: Any
    found: Any

    def __str__(self) -> str:
        return f"{self.kind} at {self.where}: the rules give {self.expected}, the chain has {self.found}"


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
        self.now: int | None = None  # the time of the block being replayed, when known
        self._migration: tuple[str, str] | None = None  # (from, to) whose Transfer comes next
        self.awards: set[tuple[int, bytes]] = set()  # (partner, ref) of awards: not qualifying
        # (partner, redemption ref) -> [points burnt, points refunded]: a refund's cap (r2).
        self.redemptions: dict[tuple[int, bytes], list[int]] = {}
        # (r2) The debt event just read, for the operation event that follows it:
        # (member, receipt ref, points).
        self._debt_recorded: tuple[str, bytes, int] | None = None
        self._debt_repaid: tuple[str, bytes, int] | None = None
        self.debtors: set[str] = set()  # members that ever owed points
        self.bonuses: dict[tuple[int, bytes], int] = {}  # (partner, ref) -> an earn's campaign bonus (r2)

    def note(self, kind: str, event: LedgerEvent, expected: Any, found: Any) -> None:
        where = f"block {event.block_number} log {event.log_index} (tx {event.tx_hash})"
        self.discrepancies.append(Discrepancy(kind, where, expected, found))

    def apply(self, e: LedgerEvent, month: int, now: int | None = None) -> None:
        """Applies one event of a block in `month` (at `now`, its timestamp: assigned tiers
        end at a second, not a month)."""
        a, m = e.args, self.model
        self.now = now
        # A migration's own Transfer is the very next event, when Transfers are read at all.
        migration, self._migration = self._migration, None
        if e.name == "Earned":  # by far the most frequent: tested first
            self._earned(e, month)
        elif e.name == "DebtRecorded":
            self._debt_recorded = (a["member"].lower(), bytes(a["receiptRef"]), int(a["points"]))
            if not m.debt_allowed:
                self.note("debt recorded while the policy rejects it", e, "no debt", a["points"])
        elif e.name == "DebtRepaid":
            self._debt_repaid = (a["member"].lower(), bytes(a["receiptRef"]), int(a["points"]))
        elif e.name == "DebtPolicySet":
            m.debt_allowed = bool(a["allowed"])
        elif e.name == "CampaignCreated":
            created = Campaign.from_event(e)
            m.campaigns[created.campaign_id] = created.model()
        elif e.name == "Awarded":
            self._awarded(e, month)
        elif e.name == "TierAssigned":
            m.assign_tier(a["member"], int(a["tier"]), int(a["until"]))
            self._qualifying.pop(a["member"].lower(), None)
        elif e.name == "Migrated":
            self._migrated(e)
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
            self.redemptions.setdefault((a["partnerId"], a["receiptRef"]), [0, 0])[0] += a["points"]
        elif e.name == "Refunded":
            self._refunded(e, month)
        elif e.name == "Reversed":
            self._reversed(e, month)
        elif e.name == "Transfer" and a["from"] != ZERO and a["to"] != ZERO:
            if migration == (a["from"].lower(), a["to"].lower()):
                return  # the migration's own Transfer: already moved
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
        assigned = state.assigned
        if assigned is not None and self.now is not None and self.now < assigned[1]:
            tier = max(tier, min(assigned[0], len(m.tiers) - 1))
        expected = m.points_for(partner, a["spend"], m.tiers[tier][1])
        points, bonus = a["points"], int(a.get("bonus", 0))
        campaign_id = int(a.get("campaignId", 0))
        if campaign_id:
            campaign = m.campaigns.get(campaign_id)
            if campaign is None or campaign.partner_id != a["partnerId"]:
                self.note("earn with another partner's or an unknown campaign", e, "its own campaign", campaign_id)
            elif self.now is not None:
                expected_bonus = campaign.bonus(base=expected, spend=a["spend"], tier=tier, now=self.now)
                if expected_bonus != bonus:
                    self.note("bonus of a campaign earn", e, expected_bonus, bonus)
                campaign.spent += bonus
        elif bonus:
            self.note("bonus without a campaign", e, 0, bonus)
        if expected + bonus != points:
            self.note("points of an earn", e, expected + bonus, points)
        expiry = NEVER if m.expiry_months == 0 else month + m.expiry_months
        if a["expiryMonth"] != expiry:
            self.note("expiry month of an earn", e, month_label(expiry), month_label(a["expiryMonth"]))
        if points > partner.allowance:
            self.note("issuance beyond the partner's allowance", e, partner.allowance, points)
        buckets, earned = state.buckets, state.earned
        credit = self._repaid(e, points) if state.debt or self._debt_repaid else points
        buckets[a["expiryMonth"]] = buckets.get(a["expiryMonth"], 0) + credit
        earned[month] = earned.get(month, 0) + points - bonus  # a bonus never qualifies
        self._qualifying[key] = (month, qualifying + points - bonus)
        partner.allowance -= points
        partner.issued += points
        self.earns[(a["partnerId"], a["receiptRef"])] = (points, month, member)
        if bonus:
            self.bonuses[(a["partnerId"], a["receiptRef"])] = bonus

    def _reversed(self, e: LedgerEvent, month: int) -> None:
        a, m = e.args, self.model
        self.operations += 1
        key = (a["partnerId"], a["earnReceiptRef"])
        earn = self.earns.get(key)
        if earn is None:
            self.note("reversal of an unknown earn", e, "an Earned event of this partner", "none")
            return
        issued, earn_month, member = earn
        before = self.reversed.get(key, 0)
        done = before + a["points"]
        if done > issued:
            self.note("reversal above the original earn", e, issued, done)
        self.reversed[key] = done
        # The event names the holder: after a migration, not the address the earn was credited to.
        holder = a["member"]
        debt, self._debt_recorded = self._debt_recorded, None
        shortfall = 0
        if debt is not None and debt[:2] == (holder.lower(), bytes(a["receiptRef"])):
            shortfall = debt[2]
            live = m.balance(holder, month)
            if live != a["points"] - shortfall:
                self.note("debt of a reversal", e, max(0, a["points"] - live), shortfall)
            m.member(holder).debt += shortfall
            self.debtors.add(holder.lower())
        self._take(e, holder, a["points"] - shortfall, month)
        if key not in self.awards:  # an award never counted as qualifying points
            # (r2) The bonus goes back first: only what is beyond it leaves the tier's points.
            unearned = a["points"] - min(a["points"], max(0, self.bonuses.get(key, 0) - before))
            earned = m.member(holder).earned
            earned[earn_month] = earned.get(earn_month, 0) - min(unearned, earned.get(earn_month, 0))
            self._qualifying.pop(holder.lower(), None)  # the earn's month counts less now
        partner = m.partners[a["partnerId"]]
        partner.allowance += a["points"]
        partner.reversed += a["points"]

    def _awarded(self, e: LedgerEvent, month: int) -> None:
        a, m = e.args, self.model
        self.operations += 1
        partner = m.partners[a["partnerId"]]
        member, points = a["member"], a["points"]
        self.seen_members.add(member.lower())
        expiry = NEVER if m.expiry_months == 0 else month + m.expiry_months
        if a["expiryMonth"] != expiry:
            self.note("expiry month of an award", e, month_label(expiry), month_label(a["expiryMonth"]))
        if points > partner.allowance:
            self.note("issuance beyond the partner's allowance", e, partner.allowance, points)
        if not 1 <= a["reason"] <= 7:
            self.note("award reason", e, "a reason code from 1 to 7", a["reason"])
        state = m.member(member)
        credit = self._repaid(e, points) if state.debt or self._debt_repaid else points
        state.buckets[a["expiryMonth"]] = state.buckets.get(a["expiryMonth"], 0) + credit
        partner.allowance -= points
        partner.issued += points
        partner.awarded += points
        key = (a["partnerId"], a["receiptRef"])
        self.earns[key] = (points, month, member)
        self.awards.add(key)

    def _refunded(self, e: LedgerEvent, month: int) -> None:
        """(r2) Points given back of a redemption at the partner it was made at, capped by what
        it burnt; they must not come back already expired."""
        a, m = e.args, self.model
        self.operations += 1
        redemption = self.redemptions.get((a["partnerId"], a["redemptionReceiptRef"]))
        if redemption is None:
            self.note("refund of an unknown redemption", e, "a Redeemed event at this partner", "none")
            return
        redemption[1] += a["points"]
        if redemption[1] > redemption[0]:
            self.note("refund above the redemption", e, redemption[0], redemption[1])
        if a["expiryMonth"] < month:
            self.note("refund of points already expired", e, f"expiry from {month_label(month)}", a["expiryMonth"])
        state = m.member(a["member"])
        credit = self._repaid(e, a["points"]) if state.debt or self._debt_repaid else a["points"]
        state.buckets[a["expiryMonth"]] = state.buckets.get(a["expiryMonth"], 0) + credit
        m.partners[a["partnerId"]].refunded += a["points"]
        self.seen_members.add(a["member"].lower())

    def _migrated(self, e: LedgerEvent) -> None:
        """The whole account moves (buckets, tier history, assigned tier); the Transfer event
        the ledger emits with it is the same move, and is skipped."""
        m, source, target = self.model, e.args["from"].lower(), e.args["to"].lower()
        moved = m.member(source)
        if sum(moved.buckets.values()) < e.args["points"]:
            self.note("migration of more points than the member held", e, sum(moved.buckets.values()), e.args["points"])
        m.members[target], m.members[source] = moved, MemberModel()
        if moved.debt:
            self.debtors.add(target)  # (r2) the debt moved with the points
        self.seen_members.add(target)
        self._qualifying.pop(source, None)
        self._qualifying.pop(target, None)
        self._migration = (source, target)

    def _repaid(self, e: LedgerEvent, points: int) -> int:
        """(r2) The points of an issue or refund to a member in debt that are left for its
        balance: the rules pay the debt first, and the `DebtRepaid` just before must say so."""
        state = self.model.member(e.args["member"])
        paid = min(state.debt, points)
        repaid, self._debt_repaid = self._debt_repaid, None
        found = (
            repaid[2]
            if repaid is not None and repaid[:2] == (e.args["member"].lower(), bytes(e.args["receiptRef"]))
            else 0
        )
        if found != paid:
            self.note("debt repaid", e, paid, found)
        state.debt -= paid
        return points - paid

    def _take(self, e: LedgerEvent, member: str, points: int, month: int) -> list[tuple[int, int]]:
        live = self.model.balance(member, month)
        if live < points:
            self.note("points spent beyond the balance", e, live, points)
        return self.model.take_earliest(member, points, month)
