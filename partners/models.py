"""Typed results of the gateway's API (SPEC section 6), built from its JSON answers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from partners.signing import Domain

FINAL_STATUSES = ("confirmed", "rejected")


def _int_or_none(value: Any) -> int | None:
    return int(value) if value is not None else None


def _str_or_none(value: Any) -> str | None:
    return str(value) if value is not None else None


@dataclass(frozen=True)
class LedgerInfo:
    """Where the ledger lives (GET /v1/ledger): what signatures are bound to."""

    chain_id: int
    address: str
    deployment_block: int
    abi: list[Any] = field(repr=False)
    compiler: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LedgerInfo:
        return cls(
            chain_id=int(data["chain_id"]),
            address=str(data["address"]),
            deployment_block=int(data["deployment_block"]),
            abi=list(data.get("abi") or []),
            compiler=_str_or_none(data.get("compiler")),
        )

    @property
    def domain(self) -> Domain:
        """The EIP-712 domain of this ledger: a signature for it is worthless on any other."""
        return Domain(chain_id=self.chain_id, contract=self.address)


@dataclass(frozen=True)
class KeyInfo:
    """The API key the client uses: its id, role and (for a partner key) partner."""

    key_id: str
    role: str
    partner_id: int | None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> KeyInfo:
        return cls(str(data["key_id"]), str(data["role"]), _int_or_none(data.get("partner_id")))


@dataclass(frozen=True)
class EnrolledMember:
    """A member just enrolled (POST /v1/members)."""

    member_id: str
    address: str
    custodial: bool

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EnrolledMember:
        return cls(str(data["member_id"]), str(data["address"]), bool(data["custodial"]))


@dataclass(frozen=True)
class ExpiringPoints:
    month: str  # "YYYY-MM": the points expire at the end of this month
    points: int


@dataclass(frozen=True)
class Member:
    """A member's balance view (GET /v1/members/{id}), read from the chain at `block_number`."""

    member_id: str
    address: str
    custodial: bool
    balance: int
    tier: str
    tier_index: int
    qualifying_points: int
    expiring: list[ExpiringPoints]
    block_number: int
    debt: int = 0  # (r2) points the member owes: the next points issued to it pay them first

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Member:
        return cls(
            member_id=str(data["member_id"]),
            address=str(data["address"]),
            custodial=bool(data.get("custodial", False)),
            balance=int(data["balance"]),
            tier=str(data["tier"]),
            tier_index=int(data.get("tier_index", 0)),
            qualifying_points=int(data["qualifying_points"]),
            expiring=[ExpiringPoints(str(e["month"]), int(e["points"])) for e in data.get("expiring", [])],
            block_number=int(data["block_number"]),
            debt=int(data.get("debt", 0)),
        )


@dataclass(frozen=True)
class OperationError:
    """Why the contract rejected an operation, e.g. `insufficient_points`, `partner_suspended`."""

    code: str
    message: str


@dataclass(frozen=True)
class Operation:
    """An earn, redemption, reversal, award, refund or migration: as accepted (202) or as later
    seen (GET /v1/operations/{id}).

    `status` moves accepted -> submitted -> confirmed or rejected. An accepted answer carries
    only what the gateway knew then (id, status, points, receipt reference); the rest is None.
    """

    operation_id: str
    status: str
    kind: str | None = None
    points: int | None = None
    receipt_ref: str | None = None
    receipt_id: str | None = None
    member_id: str | None = None
    partner_id: int | None = None
    amount_minor: int | None = None
    currency: str | None = None
    tx_hash: str | None = None
    block_number: int | None = None
    block_hash: str | None = None
    log_index: int | None = None
    earn_month: int | None = None
    earn_leaf: str | None = None
    error: OperationError | None = None
    accepted_at: str | None = None
    reason: str | None = None  # an award's reason code, a reversal's or refund's stated reason
    member_address: str | None = None  # the member's address the operation was signed for
    # A confirmed redemption's on-chain commitment: batch_id, index, expiry_month, proof, leaf.
    redemption: dict[str, Any] | None = None
    points_taken: int | None = None  # a confirmed reversal: points taken back...
    debt: int | None = None  # ...and the shortfall recorded as the member's debt
    debt_repaid: int | None = None  # a confirmed earn, award or refund: the part of `points` that paid a debt
    address: str | None = None  # a migration's new address (its 202)
    campaign_id: int | None = None  # (r2) an earn naming a campaign...
    bonus: int | None = None  # ...and its bonus, included in `points` (estimated until confirmed)

    @classmethod
    def from_json(cls, data: dict[str, Any], **known: Any) -> Operation:
        """From an answer; `known` fills what a 202 does not repeat (kind, receipt, member)."""
        error = data.get("error")
        values: dict[str, Any] = {
            "operation_id": str(data["operation_id"]),
            "status": str(data["status"]),
            "kind": _str_or_none(data.get("kind")),
            "points": _int_or_none(data.get("points")),
            "receipt_ref": _str_or_none(data.get("receipt_ref")),
            "receipt_id": _str_or_none(data.get("receipt_id")),
            "member_id": _str_or_none(data.get("member_id")),
            "partner_id": _int_or_none(data.get("partner_id")),
            "amount_minor": _int_or_none(data.get("amount_minor")),
            "currency": _str_or_none(data.get("currency")),
            "tx_hash": _str_or_none(data.get("tx_hash")),
            "block_number": _int_or_none(data.get("block_number")),
            "block_hash": _str_or_none(data.get("block_hash")),
            "log_index": _int_or_none(data.get("log_index")),
            "earn_month": _int_or_none(data.get("earn_month")),
            "earn_leaf": _str_or_none(data.get("earn_leaf")),
            "error": OperationError(str(error.get("code")), str(error.get("message"))) if error else None,
            "accepted_at": _str_or_none(data.get("accepted_at")),
            "reason": _str_or_none(data.get("reason")),
            "member_address": _str_or_none(data.get("member_address")),
            "redemption": dict(data["redemption"]) if data.get("redemption") else None,
            "points_taken": _int_or_none(data.get("points_taken")),
            "debt": _int_or_none(data.get("debt")),
            "debt_repaid": _int_or_none(data.get("debt_repaid")),
            "address": _str_or_none(data.get("address")),
            "campaign_id": _int_or_none(data.get("campaign_id")),
            "bonus": _int_or_none(data.get("bonus")),
        }
        for name, value in known.items():
            if values.get(name) is None:
                values[name] = value
        return cls(**values)

    @property
    def final(self) -> bool:
        """Confirmed or rejected: the status will not change any more."""
        return self.status in FINAL_STATUSES

    @property
    def confirmed(self) -> bool:
        return self.status == "confirmed"


@dataclass(frozen=True)
class ActivityPage:
    """One page of a member's operations, newest first; pass `next_cursor` for the next page."""

    items: list[Operation]
    next_cursor: int | None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ActivityPage:
        return cls(
            items=[Operation.from_json(item) for item in data.get("items", [])],
            next_cursor=_int_or_none(data.get("next_cursor")),
        )
