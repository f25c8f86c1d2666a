"""The points rules of SPEC section 2 as plain Python: the model the contract must agree with.

Longer than 400 lines: the whole rulebook in one file, to be read against SPEC section 2 from
top to bottom (splitting it would split the rules of one operation across files).

Deliberately naive (dicts of buckets, full sums, no packing) so that it is easy to check by
reading; the contract is the optimized version. The property tests and the auditor compare
the chain with this model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

NEVER = 2**24 - 1
BPS = 10_000
MAX_SPEND = 2**64 - 1
MAX_OP_POINTS = 2**48 - 1
MAX_ALLOWANCE = 2**128 - 1  # a partner's allowance is a uint128 on-chain


def points_for(spend: int, rate_points: int, rate_per_minor_units: int, multiplier_bps: int) -> int:
    """The earn formula: floor(spend x rate x tier multiplier), in integers as the contract does it."""
    return spend * rate_points * multiplier_bps // (rate_per_minor_units * BPS)


def month_of(timestamp: int) -> int:
    """UTC calendar month index: year * 12 + (month - 1)."""
    moment = datetime.fromtimestamp(timestamp, tz=UTC)
    return moment.year * 12 + moment.month - 1


def month_label(month: int) -> str:
    return "never" if month == NEVER else f"{month // 12:04d}-{month % 12 + 1:02d}"


def month_start(month: int) -> int:
    """Timestamp of the first second of `month`."""
    return int(datetime(month // 12, month % 12 + 1, 1, tzinfo=UTC).timestamp())


@dataclass
class PartnerModel:
    signer: str
    rate_points: int
    rate_per_minor_units: int
    currency: str
    allowance: int
    active: bool = True
    issued: int = 0
    reversed: int = 0
    redeemed: int = 0
    active_from: int = 0  # first second it may issue: added + the notice period (r2)
    awarded: int = 0  # the part of `issued` that awards issued (r2)
    issue_price: int = 0  # settlement prices per point (r2); 0: the coalition's point value
    redemption_price: int = 0
    refunded: int = 0  # points given back of redemptions at this partner (r2)


@dataclass
class MemberModel:
    buckets: dict[int, int] = field(default_factory=dict)  # expiry month -> points not yet spent
    earned: dict[int, int] = field(default_factory=dict)  # month -> points earned (net of reversals)
    assigned: tuple[int, int] | None = None  # (tier, until timestamp) the operator assigned (r2)
    debt: int = 0  # (r2) points reversals took beyond what the member held, not yet paid back


@dataclass
class CampaignModel:
    """(r2) A partner's campaign: window [start, end) in block time, bonus per qualifying earn
    (base points x bonus_bps / 10,000 + fixed_bonus), minimum spend, tiers (bit i: tier i),
    budget; `spent`, the bonus points it issued."""

    partner_id: int
    start: int
    end: int
    bonus_bps: int
    fixed_bonus: int
    min_spend: int
    tier_mask: int
    budget: int
    spent: int = 0

    def bonus(self, *, base: int, spend: int, tier: int, now: int) -> int:
        """The bonus an earn of `base` points gets: 0 outside the window, below the minimum
        spend or for a tier the campaign leaves out; never beyond the budget left."""
        if not (self.start <= now < self.end and spend >= self.min_spend and self.tier_mask >> tier & 1):
            return 0
        return min(base * self.bonus_bps // BPS + self.fixed_bonus, self.budget - self.spent)


MAX_BONUS_BPS = 100 * BPS  # a campaign's bonus multiplier is at most 100x, as tier multipliers


class Rejected(Exception):
    """An operation the rules refuse; `reason` is the contract's error name."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class PointsModel:
    tiers: list[tuple[int, int]] = field(default_factory=lambda: [(0, BPS)])  # (threshold, multiplier bps)
    expiry_months: int = 12
    transfers_enabled: bool = False
    paused: bool = False
    partners: dict[int, PartnerModel] = field(default_factory=dict)
    members: dict[str, MemberModel] = field(default_factory=dict)
    reversed_of: dict[bytes, int] = field(default_factory=dict)
    refunded_of: dict[bytes, int] = field(default_factory=dict)  # redemption leaf -> refunded (r2)
    used_partner_nonces: set[tuple[int, int]] = field(default_factory=set)
    used_member_nonces: set[tuple[str, int]] = field(default_factory=set)
    origin_of: dict[str, str] = field(default_factory=dict)  # migration (r2): address -> first address
    current_of: dict[str, str] = field(default_factory=dict)  # first address -> where its points are
    debt_allowed: bool = False  # (r2) the operator's debt policy: False rejects such reversals
    # (r2) What the last operation did to a debt: points it recorded (a reversal) or repaid
    # (an earn, award or refund), for callers that check the events.
    last_debt_recorded: int = 0
    last_debt_repaid: int = 0
    campaigns: dict[int, CampaignModel] = field(default_factory=dict)  # (r2) id (from 1) -> terms
    last_bonus: int = 0  # (r2) the campaign bonus of the last earn (included in its points)

    # ------------------------------------------------------------ reads

    def member(self, address: str) -> MemberModel:
        key = address.lower()
        state = self.members.get(key)
        if state is None:  # not setdefault: it would build a MemberModel on every call
            state = self.members[key] = MemberModel()
        return state

    def balance(self, address: str, month: int) -> int:
        return sum(p for e, p in self.member(address).buckets.items() if e >= month)

    def qualifying(self, address: str, month: int) -> int:
        get = self.member(address).earned.get
        return sum([get(m, 0) for m in range(month - 11, month + 1)])

    def tier_index(self, address: str, month: int, now: int | None = None) -> int:
        """The earned tier, or (r2) the assigned one while it runs (`now` before its end) if
        higher; an assigned tier past the end of a shortened table is the top tier. Without
        `now`, assignments are not considered."""
        qualifying = self.qualifying(address, month)
        index = 0
        for i, (threshold, _) in enumerate(self.tiers):
            if qualifying >= threshold:
                index = i
        assigned = self.member(address).assigned
        if now is not None and assigned is not None and now < assigned[1]:
            index = max(index, min(assigned[0], len(self.tiers) - 1))
        return index

    def total_supply(self, month: int) -> int:
        return sum(self.balance(a, month) for a in self.members)

    def total_debt(self) -> int:
        """(r2) Points all members owe: never part of a balance or of the supply."""
        return sum(m.debt for m in self.members.values())

    def expired(self, month: int) -> int:
        """Points that expired before `month` began (whether or not swept on-chain)."""
        return sum(p for m in self.members.values() for e, p in m.buckets.items() if e < month)

    def expiring(self, address: str, month: int) -> list[tuple[int, int]]:
        return sorted((e, p) for e, p in self.member(address).buckets.items() if e >= month and p > 0)

    def points_for(self, partner: PartnerModel, spend: int, multiplier_bps: int) -> int:
        return points_for(spend, partner.rate_points, partner.rate_per_minor_units, multiplier_bps)

    # ------------------------------------------------------------ operations

    def _partner(self, partner_id: int) -> PartnerModel:
        partner = self.partners.get(partner_id)
        if partner is None:
            raise Rejected("UnknownPartner")
        if not partner.active:
            raise Rejected("PartnerSuspended")
        return partner

    def earn(
        self,
        *,
        partner_id: int,
        member: str,
        spend: int,
        nonce: int,
        month: int,
        max_points: int = MAX_OP_POINTS,
        now: int | None = None,
        campaign_id: int = 0,
    ) -> int:
        """Applies an earn, or raises Rejected. Returns the points issued (a campaign's bonus
        included; `last_bonus` says how many). `max_points` is the most the partner signed for
        (r2); `now` (the block's time), when given, is checked against the partner's first
        issuing second. (r2) `campaign_id` names one of the partner's campaigns (an unknown one
        or another partner's: `UnknownCampaign`); its bonus needs `now`."""
        partner = self._partner(partner_id)
        if now is not None and now < partner.active_from:
            raise Rejected("PartnerNotYetActive")
        if spend <= 0 or spend > MAX_SPEND:
            raise Rejected("AmountOutOfRange")
        if (partner_id, nonce) in self.used_partner_nonces:
            raise Rejected("NonceAlreadyUsed")
        campaign = self.campaigns.get(campaign_id) if campaign_id else None
        if campaign_id and (campaign is None or campaign.partner_id != partner_id):
            raise Rejected("UnknownCampaign")
        tier = self.tier_index(member, month, now)
        points = self.points_for(partner, spend, self.tiers[tier][1])
        if points == 0:
            raise Rejected("ZeroPoints")
        bonus = 0
        if campaign is not None:
            assert now is not None, "a campaign's window is in block time"
            bonus = campaign.bonus(base=points, spend=spend, tier=tier, now=now)
        points += bonus
        if points > MAX_OP_POINTS:
            raise Rejected("AmountOutOfRange")
        if points > max_points:
            raise Rejected("MaxPointsExceeded")
        if points > partner.allowance:
            raise Rejected("AllowanceExceeded")
        self.used_partner_nonces.add((partner_id, nonce))
        state = self._issue(partner, member, points, month)
        state.earned[month] = state.earned.get(month, 0) + points - bonus  # bonus never qualifies
        if campaign is not None:
            campaign.spent += bonus
        self.last_bonus = bonus
        return points

    def create_campaign(self, campaign: CampaignModel, *, nonce: int) -> int:
        """(r2) Registers a partner's campaign (signed with a partner nonce); returns its id."""
        self._partner(campaign.partner_id)
        c = campaign
        if c.start >= c.end or not c.tier_mask or not c.budget or c.bonus_bps > MAX_BONUS_BPS:
            raise Rejected("InvalidCampaign")
        if not c.bonus_bps and not c.fixed_bonus:
            raise Rejected("InvalidCampaign")
        if (c.partner_id, nonce) in self.used_partner_nonces:
            raise Rejected("NonceAlreadyUsed")
        self.used_partner_nonces.add((c.partner_id, nonce))
        campaign_id = len(self.campaigns) + 1
        self.campaigns[campaign_id] = c
        return campaign_id

    def _issue(self, partner: PartnerModel, member: str, points: int, month: int) -> MemberModel:
        """Credits `points` issued now (expiring under the policy in force) from `partner`'s
        allowance; (r2) a debt of the member's is paid first, the partner issues them all."""
        expiry = NEVER if self.expiry_months == 0 else month + self.expiry_months
        state = self.member(member)
        credit = self._repay(state, points)
        if credit:
            state.buckets[expiry] = state.buckets.get(expiry, 0) + credit
        partner.allowance -= points
        partner.issued += points
        return state

    def _repay(self, state: MemberModel, points: int) -> int:
        """(r2) Points issued or refunded to a member in debt pay the debt first; returns
        what is left for its balance."""
        paid = min(state.debt, points)
        state.debt -= paid
        self.last_debt_repaid = paid
        return points - paid

    def _take(self, member: str, points: int, month: int) -> list[tuple[int, int]]:
        if self.balance(member, month) < points:
            raise Rejected("InsufficientPoints")
        return self.take_earliest(member, points, month)

    def take_earliest(self, member: str, points: int, month: int) -> list[tuple[int, int]]:
        """Removes up to `points` live points, earliest expiry first; returns the slices taken."""
        state = self.member(member)
        taken = []
        for expiry in sorted(e for e in state.buckets if e >= month):
            part = min(points, state.buckets[expiry])
            if part:
                state.buckets[expiry] -= part
                taken.append((expiry, part))
                points -= part
            if points == 0:
                break
        return taken

    def redeem(self, *, partner_id: int, member: str, points: int, nonce: int, month: int) -> int:
        """Burns `points` as payment at a partner; returns the latest expiry month among the
        points burnt (what a refund of this redemption restores, r2)."""
        partner = self._partner(partner_id)
        if points <= 0 or points > MAX_OP_POINTS:
            raise Rejected("AmountOutOfRange")
        if (member.lower(), nonce) in self.used_member_nonces:
            raise Rejected("NonceAlreadyUsed")
        taken = self._take(member, points, month)
        self.used_member_nonces.add((member.lower(), nonce))
        partner.redeemed += points
        return max(expiry for expiry, _ in taken)

    def refund(
        self,
        *,
        partner_id: int,
        leaf: bytes,
        member: str,
        redeemed_points: int,
        expiry_month: int,
        points: int,
        nonce: int,
        month: int,
        known: bool = True,
    ) -> int:
        """(r2) Gives back `points` of a redemption identified by `leaf` (which burnt
        `redeemed_points` from `member`, the latest of them expiring at the end of
        `expiry_month`), at the partner it was made at; `known` False for a leaf the chain
        never committed. Never more than the redemption burnt minus what was already
        refunded. The points expire no earlier than the ones it burnt would have: at the end
        of `expiry_month`, or, if that month is over, of the month a fresh earn would get
        (points never come back already expired). They go to where the member's migrations
        took its points, draw no allowance and are not qualifying points. Returns the expiry."""
        partner = self._partner(partner_id)
        if points <= 0 or points > MAX_OP_POINTS:
            raise Rejected("AmountOutOfRange")
        if (partner_id, nonce) in self.used_partner_nonces:
            raise Rejected("NonceAlreadyUsed")
        if not known:
            raise Rejected("UnknownRedemption")
        done = self.refunded_of.get(leaf, 0)
        if done + points > redeemed_points:
            raise Rejected("RefundExceedsRedemption")
        expiry = expiry_month if expiry_month >= month else self.expiry_for(month)
        state = self.member(self.holder(member))
        credit = self._repay(state, points)  # (r2) a debt is paid first
        if credit:
            state.buckets[expiry] = state.buckets.get(expiry, 0) + credit
        self.used_partner_nonces.add((partner_id, nonce))
        self.refunded_of[leaf] = done + points
        partner.refunded += points
        return expiry

    def expiry_for(self, month: int) -> int:
        """The expiry month of points issued in `month` under the current policy."""
        return NEVER if self.expiry_months == 0 else month + self.expiry_months

    def reverse(
        self,
        *,
        partner_id: int,
        leaf: bytes,
        member: str,
        earn_points: int,
        earn_month: int,
        points: int,
        nonce: int,
        month: int,
        expiry_month: int | None = None,
        qualifying: bool = True,
        bonus: int = 0,
    ) -> int:
        """Takes back points of an earn identified by `leaf` (issued `earn_points` in `earn_month`,
        expiring at the end of `expiry_month`; by default the month the current policy gives).
        (r2) Only while the earn's points have not expired: expired points are breakage. An
        award (`qualifying` False) never counted towards tiers: its reversal leaves them.
        (r2) When the holder has fewer live points, the debt policy decides: all of them are
        taken and the rest becomes its debt, or the reversal is rejected. Returns the debt
        recorded (0 when the holder had enough). (r2) An earn's campaign `bonus` never qualified:
        reversals take it back first, and only what goes beyond leaves the tier's points."""
        partner = self._partner(partner_id)
        if points <= 0 or points > MAX_OP_POINTS:
            raise Rejected("AmountOutOfRange")
        if (partner_id, nonce) in self.used_partner_nonces:
            raise Rejected("NonceAlreadyUsed")
        if expiry_month is None:
            expiry_month = NEVER if self.expiry_months == 0 else earn_month + self.expiry_months
        if expiry_month < month:
            raise Rejected("EarnExpired")
        done = self.reversed_of.get(leaf, 0)
        if done + points > earn_points:
            raise Rejected("ReversalExceedsEarn")
        member = self.holder(member)  # (r2) the earn's points followed the member's migrations
        live = self.balance(member, month)
        shortfall = max(0, points - live)
        if shortfall and not self.debt_allowed:
            raise Rejected("InsufficientPoints")
        self.take_earliest(member, points - shortfall, month)
        self.member(member).debt += shortfall
        self.last_debt_recorded = shortfall
        self.used_partner_nonces.add((partner_id, nonce))
        self.reversed_of[leaf] = done + points
        if qualifying:
            unearned = points - min(points, max(0, bonus - done))
            earned = self.member(member).earned
            earned[earn_month] = earned.get(earn_month, 0) - min(unearned, earned.get(earn_month, 0))
        # A reversal returns its points to the allowance, saturating at the uint128 maximum.
        partner.allowance = min(partner.allowance + points, MAX_ALLOWANCE)
        partner.reversed += points
        return shortfall

    def transfer(self, *, sender: str, recipient: str, points: int, month: int) -> None:
        if not self.transfers_enabled:
            raise Rejected("TransfersDisabled")
        for expiry, part in self._take(sender, points, month):
            state = self.member(recipient)
            state.buckets[expiry] = state.buckets.get(expiry, 0) + part

    # ------------------------------------------------------------ totals

    def issued(self) -> int:
        return sum(p.issued for p in self.partners.values())

    def redeemed(self) -> int:
        return sum(p.redeemed for p in self.partners.values())

    def reversed(self) -> int:
        return sum(p.reversed for p in self.partners.values())

    def refunded(self) -> int:
        return sum(p.refunded for p in self.partners.values())

    # ------------------------------------------------------------ programme changes (r2)

    notice_period: int = 0
    changes: dict[int, ScheduledChange] = field(default_factory=dict)

    def schedule(self, kind: int, value: object, *, now: int, partner_id: int = 0) -> int:
        """Records a change of the programme or of a partner's terms (SPEC section 3, r2): it
        takes effect `notice_period` seconds later, when applied; at once when the period is
        zero or no partner exists yet. Returns the change id (from 1, in order)."""
        change_id = len(self.changes) + 1
        notice = 0 if not self.partners else self.notice_period
        self.changes[change_id] = ScheduledChange(kind, partner_id, now + notice, value)
        if notice == 0:
            self._apply(change_id)
        return change_id

    def apply_change(self, change_id: int, *, now: int) -> None:
        change = self.changes.get(change_id)
        if change is None or change.state != "pending":
            raise Rejected("UnknownChange")
        if now < change.effective_at:
            raise Rejected("ChangeNotDue")
        self._apply(change_id)

    def cancel_change(self, change_id: int) -> None:
        change = self.changes.get(change_id)
        if change is None or change.state != "pending":
            raise Rejected("UnknownChange")
        change.state = "cancelled"

    def _apply(self, change_id: int) -> None:
        change = self.changes[change_id]
        change.state = "applied"
        value = change.value
        if change.kind == CHANGE_EXPIRY:
            assert isinstance(value, int)
            self.expiry_months = value
        elif change.kind == CHANGE_TIERS:
            assert isinstance(value, list)
            self.tiers = list(value)
        elif change.kind == CHANGE_RATE:
            assert isinstance(value, tuple)
            partner = self.partners[change.partner_id]
            partner.rate_points, partner.rate_per_minor_units = value
        elif change.kind == CHANGE_SIGNER:
            assert isinstance(value, str)
            self.partners[change.partner_id].signer = value
        elif change.kind == CHANGE_PRICES:
            assert isinstance(value, tuple)
            partner = self.partners[change.partner_id]
            partner.issue_price, partner.redemption_price = value
        elif change.kind == CHANGE_DEBT_POLICY:
            assert isinstance(value, bool)
            self.debt_allowed = value
        # CHANGE_POINT_VALUE changes no rule of this model (settlement only).

    def add_partner(self, partner_id: int, partner: PartnerModel, *, now: int) -> None:
        """(r2) A new partner issues its first point only after the notice period."""
        partner.active_from = now + self.notice_period
        self.partners[partner_id] = partner

    def rotate_signer(self, partner_id: int, new_signer: str, *, nonce: int) -> None:
        """(r2) A signer change authorized by the current key: at once, one nonce spent."""
        if partner_id not in self.partners:
            raise Rejected("UnknownPartner")
        if (partner_id, nonce) in self.used_partner_nonces:
            raise Rejected("NonceAlreadyUsed")
        self.used_partner_nonces.add((partner_id, nonce))
        self.partners[partner_id].signer = new_signer

    # ------------------------------------------------------------ awards, tiers, migration (r2)

    def award(
        self, *, partner_id: int, member: str, points: int, reason: int, nonce: int, month: int, now: int | None = None
    ) -> None:
        """Issues `points` without a purchase (reason 1..7), from the allowance; not qualifying."""
        partner = self._partner(partner_id)
        if now is not None and now < partner.active_from:
            raise Rejected("PartnerNotYetActive")
        if points <= 0 or points > MAX_OP_POINTS:
            raise Rejected("AmountOutOfRange")
        if not 1 <= reason <= MAX_REASON:
            raise Rejected("InvalidReason")
        if (partner_id, nonce) in self.used_partner_nonces:
            raise Rejected("NonceAlreadyUsed")
        if points > partner.allowance:
            raise Rejected("AllowanceExceeded")
        self.used_partner_nonces.add((partner_id, nonce))
        self._issue(partner, member, points, month)
        partner.awarded += points

    def assign_tier(self, member: str, tier: int, until: int) -> None:
        self.member(member).assigned = (tier, until) if until else None

    def holder(self, member: str) -> str:
        """Where the points credited to `member` are now, after its migrations (lowercase)."""
        first = self.origin_of.get(member.lower(), member.lower())
        return self.current_of.get(first, member.lower())

    def migrate(self, *, source: str, target: str, nonce: int) -> None:
        """Moves everything `source` holds to `target`, which must never have held points nor
        taken part in a migration; an address whose points already moved cannot move again."""
        source, target = source.lower(), target.lower()
        if target == source:
            raise Rejected("InvalidMember")
        existing = self.members.get(target)
        if existing is not None and (
            any(existing.buckets.values()) or existing.earned or existing.assigned or existing.debt
        ):
            raise Rejected("AccountInUse")
        if target in self.origin_of or target in self.current_of:
            raise Rejected("AccountInUse")
        if self.holder(source) != source:
            raise Rejected("InvalidMember")
        if (source, nonce) in self.used_member_nonces:
            raise Rejected("NonceAlreadyUsed")
        self.used_member_nonces.add((source, nonce))
        self.members[target] = self.member(source)
        self.members[source] = MemberModel()
        first = self.origin_of.get(source, source)
        self.current_of[first], self.origin_of[target] = target, first


MAX_REASON = 7
CHANGE_EXPIRY, CHANGE_TIERS, CHANGE_POINT_VALUE, CHANGE_RATE, CHANGE_SIGNER, CHANGE_PRICES = 1, 2, 3, 4, 5, 6
CHANGE_DEBT_POLICY = 7  # (r2) value: bool, True records a reversal's shortfall as debt


@dataclass
class ScheduledChange:
    """A change waiting for its notice period: expiry months (int), tiers (list of
    (threshold, bps)), point value, rate ((points, per minor units)), signer (address) or
    partner prices ((issue, redemption))."""

    kind: int
    partner_id: int
    effective_at: int
    value: object
    state: str = "pending"  # pending | applied | cancelled
