"""The SDK's campaigns (SPEC sections 2 and 6, r2) as sans-IO flows over `Core`, driven by both
clients like the flows of `partners._core`.

A self-custody partner signs a campaign's terms here (`partners.signing.CampaignMessage`, EIP-712
bound to the ledger's chain id and contract address); the gateway checks the signature and
registers it on-chain, answering once it is mined. An earn that names a campaign is signed as a
`CampaignEarnMessage` (`Core.earn`), so the gateway cannot move it to another campaign.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from partners._core import Call, Core, Flow, _segment
from partners.signing import CampaignMessage

MAX_TIERS = 8


@dataclass(frozen=True)
class Campaign:
    """A campaign's terms and spent budget (the chain's) and its results (the gateway's index)."""

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
    spent: int
    remaining: int
    purchases: int = 0
    spend_minor: int = 0
    members_reached: int = 0
    bonus_confirmed: int = 0

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Campaign:
        return cls(
            campaign_id=int(data["campaign_id"]),
            partner_id=int(data["partner_id"]),
            name=data.get("name"),
            starts_at=str(data["starts_at"]),
            ends_at=str(data["ends_at"]),
            multiplier_bps=int(data["multiplier_bps"]),
            fixed_bonus=int(data["fixed_bonus"]),
            min_spend_minor=int(data["min_spend_minor"]),
            tiers=[int(t) for t in data["tiers"]],
            budget=int(data["budget"]),
            spent=int(data["spent"]),
            remaining=int(data["remaining"]),
            purchases=int(data.get("purchases", 0)),
            spend_minor=int(data.get("spend_minor", 0)),
            members_reached=int(data.get("members_reached", 0)),
            bonus_confirmed=int(data.get("bonus_confirmed", 0)),
        )


def _moment(value: datetime | str | int) -> tuple[str, int]:
    """(RFC 3339 text, unix seconds) of a campaign's start or end, in whole seconds."""
    if isinstance(value, int):
        moment = datetime.fromtimestamp(value, UTC)
    elif isinstance(value, str):
        moment = datetime.fromisoformat(value)
    else:
        moment = value
    if moment.tzinfo is None:
        raise ValueError(f"{value!r} names no time zone")
    seconds = int(moment.timestamp())
    return datetime.fromtimestamp(seconds, UTC).isoformat(), seconds


def create_campaign(
    core: Core,
    *,
    starts_at: datetime | str | int,
    ends_at: datetime | str | int,
    budget: int,
    name: str | None,
    multiplier_bps: int,
    fixed_bonus: int,
    min_spend_minor: int,
    tiers: list[int] | None,
    idempotency_key: str | None,
) -> Flow[Campaign]:
    start_text, start = _moment(starts_at)
    end_text, end = _moment(ends_at)
    body: dict[str, Any] = {
        "starts_at": start_text,
        "ends_at": end_text,
        "multiplier_bps": multiplier_bps,
        "fixed_bonus": fixed_bonus,
        "min_spend_minor": min_spend_minor,
        "budget": budget,
    }
    if name is not None:
        body["name"] = name
    if tiers is not None:
        body["tiers"] = list(tiers)
    if core.signing_key is not None:
        partner_id = yield from core.own_partner_id()
        domain = yield from core.domain()
        if tiers is None:  # every tier of the programme, as the gateway reads it
            count = len((yield Call("GET", "/v1/programme"))["tiers"]) or 1
            chosen = list(range(min(count, MAX_TIERS)))
        else:
            chosen = list(tiers)
        mask = sum(1 << t for t in set(chosen) if 0 <= t < MAX_TIERS)
        body["partner_signature"] = core._partner_signed(
            domain,
            lambda n, d: CampaignMessage(
                partner_id, start, end, multiplier_bps, fixed_bonus, min_spend_minor, mask, budget, n, d
            ),
        )
    return Campaign.from_json((yield core.post("/v1/campaigns", body, idempotency_key)))


def campaigns(core: Core) -> Flow[list[Campaign]]:
    """The partner's own campaigns (an admin's or auditor's key: all), newest first."""
    data = yield Call("GET", "/v1/campaigns")
    return [Campaign.from_json(item) for item in data.get("items", [])]


def campaign(core: Core, campaign_id: int) -> Flow[Campaign]:
    return Campaign.from_json((yield Call("GET", f"/v1/campaigns/{_segment(str(campaign_id))}")))
