"""Request and response bodies of the operator console (SPEC section 6, r2): what it reads
from the chain, and the changes it makes there."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, StrictBool, StrictInt, StrictStr, model_validator

from gateway.api.schemas.requests import MAX_ALLOWANCE, MAX_INT64, MAX_NONCE, Address, Currency, EarnRate, Strict
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
    kind: str = Field(description="expiry | tiers | point_value | rate | signer | prices | debt_policy")
    partner_id: int | None = Field(description="the partner whose terms change; null: programme-wide")
    state: str = Field(description="pending | applied | cancelled")
    effective_at: int = Field(description="unix seconds (chain time) from which it may apply")
    seconds_left: int | None = Field(description="pending changes: chain seconds until effective_at")
    due: bool = Field(description="pending and past effective_at: anyone may apply it now")
    terms: dict[str, Any] = Field(description='what it sets, e.g. {"tiers": [...]} or {"earn_rate": {...}}')


class ChangeDetail(ChangeOut):
    block_number: int


class ProgrammeView(Body):
    block_number: int
    tiers: list[TierOut]
    expiry_months: int
    point_value: PointValueOut
    transfers_enabled: bool
    paused: bool
    debt_allowed: bool  # (r2) a reversal beyond the balance leaves debt (else it is rejected)
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


# ------------------------------------------------------------------ writes (requests)

Uint128 = Annotated[StrictInt, Field(ge=0, le=MAX_ALLOWANCE)]


class Prices(Strict):
    issue: Uint128 = Field(description="minor units the partner pays per point it issues (0: the point value)")
    redemption: Uint128 = Field(description="minor units it is paid per point redeemed at it (0: the point value)")


class PartnerUpdate(Strict):
    """Scheduled under the notice period: one change per field given."""

    earn_rate: EarnRate | None = None
    prices: Prices | None = None


class AllowanceAdd(Strict):
    add: Annotated[StrictInt, Field(ge=1, le=MAX_ALLOWANCE, description="points added to what is left")]


class SignerChange(Strict):
    """With the current key's EIP-712 signature over RotateSigner(partnerId, newSigner, nonce,
    deadline): the new key signs at once. Without: scheduled under notice (a lost key), and the
    current key or the operator can cancel it until it applies."""

    signer_address: Address
    signature: Annotated[StrictStr, Field(pattern=r"^(0x)?[0-9a-fA-F]{128}$")] | None = Field(
        default=None, description="EIP-2098 compact signature (64 bytes hex) of the current signer"
    )
    nonce: Annotated[StrictInt, Field(ge=0, le=MAX_NONCE)] | None = None
    deadline: Annotated[StrictInt, Field(ge=0, le=MAX_INT64)] | None = None

    @model_validator(mode="after")
    def _all_or_none(self) -> SignerChange:
        given = [self.signature is not None, self.nonce is not None, self.deadline is not None]
        if any(given) and not all(given):
            raise ValueError("a signed rotation sends signature, nonce and deadline together")
        return self


class TierRow(Strict):
    threshold: Annotated[StrictInt, Field(ge=0, le=2**64 - 1, description="qualifying points from")]
    multiplier_bps: Annotated[StrictInt, Field(ge=0, le=2**32 - 1, description="10,000 = 1x; 1 to 1,000,000")]


class PointValueIn(Strict):
    minor_units: Annotated[StrictInt, Field(ge=0, le=2**256 - 1)]
    currency: Currency


class ProgrammeChange(Strict):
    """Each field given becomes one scheduled change; `transfers_enabled` acts at once (the
    ledger does not schedule it)."""

    tiers: list[TierRow] | None = Field(default=None, max_length=64)
    expiry_months: Annotated[StrictInt, Field(ge=0, le=65_535)] | None = None
    point_value: PointValueIn | None = None
    transfers_enabled: StrictBool | None = None
    debt_allowed: StrictBool | None = Field(
        default=None, description="(r2) the debt policy: a reversal beyond the balance leaves debt, or is rejected"
    )

    model_config = Strict.model_config | {
        "json_schema_extra": {
            "examples": [
                {
                    "tiers": [
                        {"threshold": 0, "multiplier_bps": 10_000},
                        {"threshold": 5_000, "multiplier_bps": 15_000},
                    ]
                }
            ]
        }
    }


class TierAssign(Strict):
    tier: Annotated[StrictInt, Field(ge=0, le=255, description="index in the tier table")]
    until: Annotated[StrictInt, Field(ge=0, le=2**64 - 1, description="unix seconds; 0 withdraws the assignment")]


# ------------------------------------------------------------------ writes (responses)


class ScheduledChanges(Body):
    partner_id: int | None = None
    changes: list[ChangeOut]
    transfers_enabled: bool | None = None  # set at once, when the request switched them


class AllowanceOut(Body):
    partner_id: int
    added: int
    allowance_before: int
    allowance_left: int
    block_number: int


class PartnerStatus(Body):
    partner_id: int
    active: bool
    block_number: int


class SignerOut(Body):
    partner_id: int
    signer_address: str
    rotated: bool = Field(description="true: in force now; false: scheduled (see change)")
    change: ChangeOut | None


class PauseOut(Body):
    paused: bool
    block_number: int


class TierAssigned(Body):
    member_id: str
    address: str
    assigned_tier: int | None
    until: int | None
    tier: int = Field(description="the member's tier now: the higher of the assigned and the earned one")
    block_number: int
