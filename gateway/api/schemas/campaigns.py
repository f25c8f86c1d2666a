"""Campaigns (SPEC section 6, r2): what a partner sends to register one, and a campaign's view."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StrictInt, StrictStr

from gateway.api.schemas.requests import Signed, Strict, Timestamp
from gateway.api.schemas.responses import Body


class CampaignCreate(Strict):
    name: Annotated[StrictStr, Field(min_length=1, max_length=200)] | None = None
    starts_at: Timestamp
    ends_at: Timestamp
    multiplier_bps: Annotated[StrictInt, Field(ge=0, le=1_000_000)] = 0  # the bonus: base x bps / 10,000
    fixed_bonus: Annotated[StrictInt, Field(ge=0, le=2**48 - 1)] = 0  # ...plus this, per qualifying earn
    min_spend_minor: Annotated[StrictInt, Field(ge=0, le=2**64 - 1)] = 0
    tiers: Annotated[list[Annotated[StrictInt, Field(ge=0, le=7)]], Field(max_length=8)] | None = None  # all
    budget: Annotated[StrictInt, Field(ge=1, le=2**128 - 1)]
    partner_signature: Signed | None = None  # a self-custody partner's, over CampaignMessage


class CampaignView(Body):
    campaign_id: int
    partner_id: int
    name: str | None
    starts_at: str
    ends_at: str
    multiplier_bps: int
    fixed_bonus: int
    min_spend_minor: int
    tiers: list[int]
    budget: int
    spent: int  # bonus points issued (the chain's)
    remaining: int
    purchases: int  # confirmed earns that named it (the index's)
    spend_minor: int
    members_reached: int
    bonus_confirmed: int


class CampaignList(Body):
    items: list[CampaignView]
