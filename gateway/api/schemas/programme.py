"""Response bodies of the programme routes: webhooks (SPEC section 6, r2) and programme
metrics (section 5, r2)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from gateway.api.schemas.responses import Body, OperationView


class WebhookCreate(BaseModel):
    url: str = Field(max_length=2048, description="https URL (http and private addresses only in development)")
    events: list[str] = Field(min_length=1, max_length=16, description='event types, or ["*"] for all')


class WebhookOut(Body):
    webhook_id: str
    partner_id: int | None
    url: str
    events: list[str]
    active: bool
    created_at: str


class WebhookCreated(WebhookOut):
    secret: str = Field(description="shown once: the HMAC key of the Loyalty-Signature header")


class WebhookList(Body):
    items: list[WebhookOut]


class DeliveryAttempt(Body):
    at: str
    status_code: int | None
    error: str | None
    duration_ms: int
    succeeded: bool


class DeliveryOut(Body):
    delivery_id: int
    event_id: str
    type: str
    status: str
    attempts: int
    next_attempt_at: str | None
    last_status_code: int | None
    last_error: str | None
    delivered_at: str | None
    log: list[DeliveryAttempt]


class DeliveryList(Body):
    items: list[DeliveryOut]


class Flow(Body):
    earned_at: int
    redeemed_at: int
    points: int
    value_minor: int


class CampaignFigures(Body):
    campaign_id: int
    partner_id: int
    bonus_points: int
    purchases: int  # earns naming it that got a bonus
    earns_named: int  # every earn naming it, bonus or not (outside its window, tiers or budget: 0 bonus)
    spend_minor: int
    members_reached: int


class ProgrammeMetrics(Body):
    """SPEC section 5 (r2), for [from, to); rates are fractions (null when nothing was issued)."""

    period: dict[str, int]
    partner_id: int | None
    churn_days: int
    members_active: int
    new_members: int
    repeat_purchase_rate: float | None
    average_days_between_purchases: float | None
    points_issued: int
    points_bonus: int
    points_redeemed: int
    points_reversed: int
    points_expired: int
    redemption_rate: float | None
    breakage_rate: float | None
    members_at_churn_risk: int
    liability_points: int
    liability_value_minor: int
    debt_outstanding: int  # (r2) members' debt at the period's end, in points; not part of the liability
    point_value_minor: int
    currency: str
    flows: list[Flow]
    campaigns: list[CampaignFigures]
    source: dict[str, Any]


class OperationFeed(Body):
    """Oldest first; `next_cursor` continues after the last row (null: nothing more yet)."""

    items: list[OperationView]  # the same rows as GET /v1/operations/{id}
    next_cursor: str | None


class PartnerStatement(Body):
    partner_id: int
    period: dict[str, int]
    currency: str
    issued: int
    awarded: int = 0  # (r2) the parts of `issued` awards and campaign bonuses issued
    bonus: int = 0
    reversed: int
    redeemed: int
    refunded: int = 0  # (r2) points given back of redemptions at this partner
    net_points: int
    owes_minor: int = 0  # (r2) for issued net of reversed, at its issue prices
    owed_minor: int = 0  # (r2) for redeemed net of refunded, at its redemption prices
    net_amount_minor: int
    issue_price_minor: int = 0  # (r2) in force at the end; 0: the point value
    redemption_price_minor: int = 0
    point_value_minor: int
    settlement_currency: str
    source: dict[str, Any]
