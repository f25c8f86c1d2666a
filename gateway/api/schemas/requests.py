"""Request bodies of the v1 API: strict types (amounts are JSON integers), bounded values.

Every integer is bounded by what both the contract and the database hold: the contract takes
spends up to 2**64 - 1 and deadlines up to 2**256 - 1, but the database keeps both in a
signed 64-bit column, so the API stops at 2**63 - 1 (a deadline of 2**63 - 1 seconds is
longer than the sun will shine; a spend of 2**63 - 1 minor units is 92 quadrillion EUR).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from eth_utils import to_checksum_address
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, StrictStr, model_validator

from gateway.core.currencies import is_currency

MAX_INT64 = 2**63 - 1  # a BIGINT column: ids, cursors, spends, deadlines
MAX_PARTNER_ID = 2**31 - 1  # the contract's uint32, in an INTEGER column
MAX_SPEND = MAX_INT64  # the contract allows 2**64 - 1; the database's column less
MAX_POINTS = 2**48 - 1  # the contract's bound on points moved by one operation
MAX_ALLOWANCE = 2**128 - 1
MAX_NONCE = 2**256 - 1
MAX_DEADLINE = MAX_INT64  # the contract's uint256, bounded by the database's column


def _iso_4217(code: str) -> str:
    if not is_currency(code):
        raise ValueError(f"{code} is not an active ISO 4217 currency code")
    return code


def _eip55(address: str) -> str:
    """All-lowercase (or all-uppercase) hex carries no checksum; mixed case must be EIP-55's."""
    digits = address[2:]
    if digits != digits.lower() and digits != digits.upper() and to_checksum_address(address) != address:
        raise ValueError("the address's mixed case is not its EIP-55 checksum (a typo?)")
    return address


def _path_safe(identifier: str) -> str:
    if identifier in (".", ".."):
        raise ValueError("'.' and '..' cannot be used in a URL path")
    return identifier


# RFC 3339: a date, a time and a time zone (Z or an offset). Seconds fractions up to 6 digits.
RFC_3339 = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2})$"


def _rfc_3339(text: str) -> str:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError("not a real date and time") from exc
    if moment.year < 2000:
        raise ValueError("a receipt issued before the year 2000?")
    return text


Currency = Annotated[StrictStr, Field(pattern=r"^[A-Z]{3}$", examples=["EUR"])]
IsoCurrency = Annotated[StrictStr, Field(pattern=r"^[A-Z]{3}$", examples=["EUR"]), AfterValidator(_iso_4217)]
Address = Annotated[
    StrictStr,
    Field(pattern=r"^0x[0-9a-fA-F]{40}$", description="EIP-55 checksummed, or all lowercase"),
    AfterValidator(_eip55),
]
Identifier = Annotated[
    StrictStr,
    Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:\-]+$", description="not '.' or '..'"),
    AfterValidator(_path_safe),
]
ReceiptId = Annotated[StrictStr, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:/\-]+$")]
Timestamp = Annotated[
    StrictStr,
    Field(
        max_length=40,
        pattern=RFC_3339,
        description="RFC 3339 with a time zone; at most a day ahead of the gateway's clock",
        examples=["2026-11-22T10:15:00+00:00"],
    ),
    AfterValidator(_rfc_3339),
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class EarnRate(Strict):
    points: Annotated[StrictInt, Field(ge=1, le=2**32 - 1)]
    per_minor_units: Annotated[StrictInt, Field(ge=1, le=2**32 - 1)]


class PartnerCreate(Strict):
    name: Annotated[StrictStr, Field(min_length=1, max_length=200)]
    currency: IsoCurrency
    earn_rate: EarnRate
    allowance: Annotated[StrictInt, Field(ge=0, le=MAX_ALLOWANCE)]
    signer_address: Address | None = None
    # A partner the operator already added on-chain (`loyalty operator add-partner`): the
    # gateway checks signer, currency and rate against the chain and adopts it (the chain's
    # allowance stands). The only way when the gateway holds no operator key.
    partner_id: Annotated[StrictInt, Field(ge=1, le=MAX_PARTNER_ID)] | None = None

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "Bean & Leaf coffee",
                    "currency": "EUR",
                    "earn_rate": {"points": 1, "per_minor_units": 100},
                    "allowance": 1_000_000,
                }
            ]
        }
    )


class ApiKeyCreate(Strict):
    role: Literal["partner", "auditor", "admin"]
    partner_id: Annotated[StrictInt, Field(ge=1, le=MAX_PARTNER_ID)] | None = None


class MemberCreate(Strict):
    member_id: Identifier
    address: Address | None = None
    pin: Annotated[StrictStr, Field(pattern=r"^[0-9]{4,12}$")] | None = None

    model_config = ConfigDict(json_schema_extra={"examples": [{"member_id": "card-0042", "pin": "4321"}]})

    @model_validator(mode="after")
    def _pin_or_address(self) -> MemberCreate:
        if self.pin is not None and self.address is not None:
            raise ValueError("give a pin (custodial member) or an address (self-custody), not both")
        return self


# (r2) The receipt document's random salt (hex, 128 to 256 bits). The gateway draws one unless
# the operation is signed outside it; then it is the one the signer hashed (the partner SDK
# sends it), and absent only for a signer that predates the salt.
ReceiptSalt = Annotated[StrictStr, Field(pattern=r"^[0-9a-f]{32,64}$")]


class Signed(Strict):
    """A signature made outside the gateway, with the nonce and deadline it covers."""

    signature: Annotated[StrictStr, Field(pattern=r"^0x[0-9a-fA-F]{128}([0-9a-fA-F]{2})?$")]
    nonce: Annotated[StrictInt, Field(ge=0, le=MAX_NONCE)]
    deadline: Annotated[StrictInt, Field(ge=0, le=MAX_DEADLINE)]


class EarnCreate(Strict):
    member_id: Identifier
    receipt_id: ReceiptId
    amount_minor: Annotated[StrictInt, Field(ge=1, le=MAX_SPEND)]
    currency: Currency
    issued_at: Timestamp | None = None
    partner_signature: Signed | None = None
    receipt_salt: ReceiptSalt | None = None
    campaign_id: Annotated[StrictInt, Field(ge=1, le=2**64 - 1)] | None = None  # (r2) one of the partner's campaigns

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "member_id": "card-0042",
                    "receipt_id": "till-7/2026-11-22/0193",
                    "amount_minor": 1250,
                    "currency": "EUR",
                }
            ]
        }
    )


class PinAuthorization(Strict):
    pin: Annotated[StrictStr, Field(pattern=r"^[0-9]{4,12}$")]


class RedemptionCreate(Strict):
    member_id: Identifier
    receipt_id: ReceiptId
    points: Annotated[StrictInt, Field(ge=1, le=MAX_POINTS)]
    authorization: PinAuthorization | Signed
    issued_at: Timestamp | None = None
    receipt_salt: ReceiptSalt | None = None

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "member_id": "card-0042",
                    "receipt_id": "till-7/2026-11-22/0194",
                    "points": 100,
                    "authorization": {"pin": "4321"},
                }
            ]
        }
    )


class ReversalCreate(Strict):
    receipt_id: ReceiptId
    refund_id: ReceiptId | None = None
    amount_minor: Annotated[StrictInt, Field(ge=1, le=MAX_SPEND)] | None = None
    points: Annotated[StrictInt, Field(ge=1, le=MAX_POINTS)] | None = None
    reason: Annotated[StrictStr, Field(min_length=1, max_length=500)]
    issued_at: Timestamp | None = None
    partner_signature: Signed | None = None
    receipt_salt: ReceiptSalt | None = None

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"receipt_id": "till-7/2026-11-22/0193", "amount_minor": 500, "reason": "one item returned"}]
        }
    )


# (r2) SPEC section 2's award reasons; any other is a 422.
AwardReason = Literal["bonus", "goodwill", "referral", "signup", "employee", "correction", "retro_claim"]


class AwardCreate(Strict):
    member_id: Identifier
    receipt_id: ReceiptId
    points: Annotated[StrictInt, Field(ge=1, le=MAX_POINTS)]
    reason: AwardReason
    note: Annotated[StrictStr, Field(max_length=500)] | None = None
    issued_at: Timestamp | None = None
    partner_signature: Signed | None = None
    receipt_salt: ReceiptSalt | None = None

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"member_id": "card-0042", "receipt_id": "welcome/0042", "points": 500, "reason": "signup"}]
        }
    )


class RefundCreate(Strict):
    redemption_receipt_id: ReceiptId
    receipt_id: ReceiptId
    points: Annotated[StrictInt, Field(ge=1, le=MAX_POINTS)]
    reason: Annotated[StrictStr, Field(min_length=1, max_length=500)]
    issued_at: Timestamp | None = None
    partner_signature: Signed | None = None
    receipt_salt: ReceiptSalt | None = None

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "redemption_receipt_id": "till-7/2026-11-22/0194",
                    "receipt_id": "return/2026-11-24/0007",
                    "points": 40,
                    "reason": "one item returned",
                }
            ]
        }
    )


class MigrationCreate(Strict):
    """(r2) Moves a member's points to `address`, a new address of its own: a custodial member
    authorizes with its PIN, a self-custody member with its signature over Migrate(from, to,
    nonce, deadline)."""

    address: Address
    authorization: PinAuthorization | Signed

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"address": "0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc", "authorization": {"pin": "4321"}}]
        }
    )
