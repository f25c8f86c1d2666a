"""Response bodies of the operator console (read from the chain)."""

from __future__ import annotations

from gateway.api.schemas.responses import Body, EarnRateOut


class TierOut(Body):
    index: int
    name: str | None
    threshold: int
    multiplier_bps: int


class PointValueOut(Body):
    minor_units: int
    currency: str


class ChangeOut(Body):
    change_id: int
    kind: str  # expiry | tiers | point_value | rate | signer | prices
    partner_id: int | None
    state: str  # pending | applied | cancelled
    effective_at: int
    seconds_left: int | None  # pending changes only


class ProgrammeView(Body):
    block_number: int
    tiers: list[TierOut]
    expiry_months: int
    point_value: PointValueOut
    transfers_enabled: bool
    paused: bool
    notice_period_seconds: int
    changes: list[ChangeOut]


class PartnerTerms(Body):
    partner_id: int
    name: str | None  # None: on the ledger, not onboarded in this gateway
    signer_address: str
    active: bool
    issues_from: int
    issuing: bool
    earn_rate: EarnRateOut
    currency: str
    allowance_left: int
    issued: int
    awarded: int
    reversed: int
    redeemed: int
    issue_price: int
    redemption_price: int


class PartnerDetail(PartnerTerms):
    block_number: int


class PartnerList(Body):
    block_number: int
    items: list[PartnerTerms]
