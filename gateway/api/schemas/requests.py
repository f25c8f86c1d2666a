"""Request bodies of the v1 API: strict types (amounts are JSON integers), bounded values."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

MAX_SPEND = 2**64 - 1  # the contract's bound on one earn's spend
MAX_POINTS = 2**48 - 1  # the contract's bound on points moved by one operation
MAX_ALLOWANCE = 2**128 - 1
MAX_NONCE = 2**256 - 1

Currency = Annotated[StrictStr, Field(pattern=r"^[A-Z]{3}$", examples=["EUR"])]
Address = Annotated[StrictStr, Field(pattern=r"^0x[0-9a-fA-F]{40}$")]
Identifier = Annotated[StrictStr, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:\-]+$")]
ReceiptId = Annotated[StrictStr, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:/\-]+$")]
Timestamp = Annotated[StrictStr, Field(max_length=40, examples=["2026-11-22T10:15:00+00:00"])]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class EarnRate(Strict):
    points: Annotated[StrictInt, Field(ge=1, le=2**32 - 1)]
    per_minor_units: Annotated[StrictInt, Field(ge=1, le=2**32 - 1)]


class PartnerCreate(Strict):
    name: Annotated[StrictStr, Field(min_length=1, max_length=200)]
    currency: Currency
    earn_rate: EarnRate
    allowance: Annotated[StrictInt, Field(ge=0, le=MAX_ALLOWANCE)]
    signer_address: Address | None = None
    # A partner the operator already added on-chain (`loyalty operator add-partner`): the
    # gateway checks signer, currency and rate against the chain and adopts it (the chain's
    # allowance stands). The only way when the gateway holds no operator key.
    partner_id: Annotated[StrictInt, Field(ge=1, le=2**32 - 1)] | None = None

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
    partner_id: Annotated[StrictInt, Field(ge=1, le=2**32 - 1)] | None = None


class MemberCreate(Strict):
    member_id: Identifier
    address: Address | None = None
    pin: Annotated[StrictStr, Field(pattern=r"^[0-9]{4,12}$")] | None = None

    model_config = ConfigDict(json_schema_extra={"examples": [{"member_id": "card-0042", "pin": "4321"}]})


class Signed(Strict):
    """A signature made outside the gateway, with the nonce and deadline it covers."""

    signature: Annotated[StrictStr, Field(pattern=r"^0x[0-9a-fA-F]{128}([0-9a-fA-F]{2})?$")]
    nonce: Annotated[StrictInt, Field(ge=0, le=MAX_NONCE)]
    deadline: Annotated[StrictInt, Field(ge=0, le=2**64 - 1)]


class EarnCreate(Strict):
    member_id: Identifier
    receipt_id: ReceiptId
    amount_minor: Annotated[StrictInt, Field(ge=1, le=MAX_SPEND)]
    currency: Currency
    issued_at: Timestamp | None = None
    partner_signature: Signed | None = None

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

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"receipt_id": "till-7/2026-11-22/0193", "amount_minor": 500, "reason": "one item returned"}]
        }
    )
