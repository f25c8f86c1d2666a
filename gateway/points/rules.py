"""The points rules of SPEC section 2 as plain Python: the model the contract must agree with.

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


@dataclass
class MemberModel:
    buckets: dict[int, int] = field(default_factory=dict)  # expiry month -> points not yet spent
    earned: dict[int, int] = field(default_factory=dict)  # month -> points earned (net of reversals)


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
    used_partner_nonces: set[tuple[int, int]] = field(default_factory=set)
    used_member_nonces: set[tuple[str, int]] = field(default_factory=set)

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

    def tier_index(self, address: str, month: int) -> int:
        qualifying = self.qualifying(address, month)
        index = 0
        for i, (threshold, _) in enumerate(self.tiers):
            if qualifying >= threshold:
                index = i
        return index

    def total_supply(self, month: int) -> int:
        return sum(self.balance(a, month) for a in self.members)

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

    def earn(self, *, partner_id: int, member: str, spend: int, nonce: int, month: int) -> int:
        """Applies an earn, or raises Rejected. Returns the points issued."""
        partner = self._partner(partner_id)
        if spend <= 0 or spend > MAX_SPEND:
            raise Rejected("AmountOutOfRange")
        if (partner_id, nonce) in self.used_partner_nonces:
            raise Rejected("NonceAlreadyUsed")
        multiplier = self.tiers[self.tier_index(member, month)][1]
        points = self.points_for(partner, spend, multiplier)
        if points == 0:
            raise Rejected("ZeroPoints")
        if points > MAX_OP_POINTS:
            raise Rejected("AmountOutOfRange")
        if points > partner.allowance:
            raise Rejected("AllowanceExceeded")
        self.used_partner_nonces.add((partner_id, nonce))
        expiry = NEVER if self.expiry_months == 0 else month + self.expiry_months
        state = self.member(member)
        state.buckets[expiry] = state.buckets.get(expiry, 0) + points
        state.earned[month] = state.earned.get(month, 0) + points
        partner.allowance -= points
        partner.issued += points
        return points

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

    def redeem(self, *, partner_id: int, member: str, points: int, nonce: int, month: int) -> None:
        partner = self._partner(partner_id)
        if points <= 0 or points > MAX_OP_POINTS:
            raise Rejected("AmountOutOfRange")
        if (member.lower(), nonce) in self.used_member_nonces:
            raise Rejected("NonceAlreadyUsed")
        self._take(member, points, month)
        self.used_member_nonces.add((member.lower(), nonce))
        partner.redeemed += points

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
    ) -> None:
        """Takes back points of an earn identified by `leaf` (issued `earn_points` in `earn_month`)."""
        partner = self._partner(partner_id)
        if points <= 0 or points > MAX_OP_POINTS:
            raise Rejected("AmountOutOfRange")
        if (partner_id, nonce) in self.used_partner_nonces:
            raise Rejected("NonceAlreadyUsed")
        done = self.reversed_of.get(leaf, 0)
        if done + points > earn_points:
            raise Rejected("ReversalExceedsEarn")
        self._take(member, points, month)
        self.used_partner_nonces.add((partner_id, nonce))
        self.reversed_of[leaf] = done + points
        earned = self.member(member).earned
        earned[earn_month] = earned.get(earn_month, 0) - min(points, earned.get(earn_month, 0))
        # A reversal returns its points to the allowance, saturating at the uint128 maximum.
        partner.allowance = min(partner.allowance + points, MAX_ALLOWANCE)
        partner.reversed += points

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
