"""Response bodies of the v1 API, as the routes' `response_model`s: what OpenAPI (/docs) shows.

The routes build their JSON themselves (the hot path skips a second validation); these models
describe it, and tests/gateway/test_api_schemas.py checks real answers against them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Body(BaseModel):
    # Documentation of what is sent; a field added to an answer is not an error here.
    model_config = ConfigDict(extra="allow")


class ErrorDetail(Body):
    code: str
    message: str


class ErrorBody(Body):
    """Every refusal: `{"error": {"code", "message", ...extra fields}}`."""

    error: ErrorDetail


_MEANING = {
    400: "the body is not valid JSON",
    401: "no API key, or an unknown or revoked one",
    403: "the key's role may not do this (or a wrong or locked PIN)",
    404: "no such partner, member, operation, receipt, key, webhook or job",
    408: "the request body did not arrive in time",
    409: "clashes with the state: a duplicate receipt, a balance, a used nonce, the last admin key",
    413: "the body is over 64 KiB",
    422: "the request does not match the schema, or the rules refuse it",
    429: "too many requests for this API key (see Retry-After)",
    503: "the chain cannot be reached (see Retry-After)",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses, each with the gateway's error shape."""
    return {status: {"model": ErrorBody, "description": _MEANING[status]} for status in statuses}


# What any authenticated API route may answer besides its success.
API_ERRORS = errors(400, 401, 403, 404, 408, 409, 413, 422, 429, 503)


class EarnRateOut(Body):
    points: int
    per_minor_units: int


class PartnerCreated(Body):
    partner_id: int
    api_key: str
    signer_address: str
    managed: bool
    name: str
    currency: str
    allowance: int
    earn_rate: EarnRateOut


class ApiKeyCreated(Body):
    key_id: str
    api_key: str
    role: str
    partner_id: int | None


class ApiKeySelf(Body):
    key_id: str
    role: str
    partner_id: int | None
    created_at: str | None


class MemberCreated(Body):
    member_id: str
    address: str
    custodial: bool


class MemberUnlocked(Body):
    member_id: str
    locked: bool


class Expiring(Body):
    month: str
    points: int


class MemberView(Body):
    member_id: str
    address: str
    custodial: bool
    balance: int
    tier: str | int
    tier_index: int
    qualifying_points: int
    expiring: list[Expiring]
    debt: int = 0  # (r2) points owed: reversals beyond the balance, paid by the next issues first
    block_number: int


class OperationError(Body):
    code: str
    message: str | None


class OperationView(Body):
    operation_id: str
    kind: str
    status: str
    partner_id: int
    member_id: str
    receipt_id: str
    receipt_ref: str
    points: int | None
    amount_minor: int | None
    currency: str | None
    tx_hash: str | None
    block_number: int | None
    block_hash: str | None
    log_index: int | None
    earn_month: int | None
    error: OperationError | None
    accepted_at: str
    reason: str | None = None
    member_address: str | None = None  # the address the operation was signed for (r2)
    # (r2) a confirmed redemption's commitment, what a refund's signature covers
    redemption: dict[str, Any] | None = None
    points_taken: int | None = None  # (r2) reversals: points taken back, and the part recorded as debt
    debt: int | None = None
    campaign_id: int | None = None  # (r2) an earn naming a campaign, and its bonus (in `points`)
    bonus: int | None = None
    debt_repaid: int | None = None  # (r2) a confirmed earn, award or refund: the part of `points` that paid a debt


class Activity(Body):
    items: list[OperationView]
    next_cursor: int | None


class Accepted(Body):
    """202: the operation is stored and will reach the chain in a batch."""

    operation_id: str
    status: str
    points: int | None
    receipt_ref: str
    earn_leaf: str | None = None  # reversals: the leaf of the earn they reverse
    reason: str | None = None  # awards: the reason code (r2)
    redemption_leaf: str | None = None  # refunds: the leaf of the redemption they refund (r2)
    member_id: str | None = None  # migrations: the member, and the address it moves to (r2)
    address: str | None = None
    bonus: int | None = None  # (r2) an earn naming a campaign: its estimated bonus (in `points`)


class LedgerInfo(Body):
    chain_id: int
    address: str
    deployment_block: int
    abi: list[dict[str, Any]]
    compiler: str


class ReceiptProof(Body):
    partner_id: int | None
    receipt_id: str | None
    kind: str | None
    operation_id: str | None = None  # a stored receipt's operation, and its status in the index
    status: str | None = None
    receipt: dict[str, Any]
    receipt_canonical: str
    receipt_hash: str
    event: dict[str, Any] | None
    matches: bool


class SettlementStatement(Body):
    period: dict[str, int]
    point_value: dict[str, Any]
    partners: list[dict[str, Any]]
    breakage: dict[str, int]
    debt: dict[str, int] | None = None  # (r2) recorded, repaid; start_points, end_points outstanding
    operator: dict[str, int] | None = None  # (r2) spread, breakage, revaluation, total
    liability: dict[str, int]
    net_points_total: int | None = None
    net_amount_total: int
    balanced: bool


class VerifyProgress(Body):
    phase: str
    blocks_read: int
    blocks_total: int


class DiscrepancyOut(Body):
    kind: str
    where: str
    expected: Any
    found: Any
    text: str


class VerifyJob(Body):
    job_id: str
    status: str
    started_at: str
    finished_at: str | None
    progress: VerifyProgress
    from_block: int | None
    to_block: int | None
    events: int | None
    operations: int | None
    members: int | None
    supply: int | None
    index_operations: int | None
    discrepancies: list[DiscrepancyOut]
    ok: bool | None
    error: str | None


class Health(Body):
    """200 when the chain and the database answer, else 503 with the failing check's error."""

    status: str
    chain_block: int | None = None
    chain_error: str | None = None
    database: str | None = None
    database_error: str | None = None
    submitter_leader: bool
    submitter_running: bool | None = None
    submitter_error: str | None = None
    probe_error: str | None = None
    checked_seconds_ago: float = Field(description="age of the checks answered (a probe runs every second)")
    process: int
