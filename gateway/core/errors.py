"""The single root of the gateway's errors, and the catalogue of their codes.

Every error the gateway raises on purpose is a `LoyaltyError` named by what went wrong; it
carries a machine `code` from `ErrorCode` (what the API puts in its error JSON, and what the
partner SDK's table, partners/errors.py, maps to its exceptions) and a `Category`. Only the
edge turns a category into an HTTP status, in one table (gateway/api/errors.py).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class Category(StrEnum):
    """What kind of refusal or failure an error is; the edge maps each to one HTTP status."""

    MALFORMED = "malformed"  # the request could not be read at all
    INVALID = "invalid"  # well-formed input the rules refuse
    UNAUTHENTICATED = "unauthenticated"  # no valid API key
    FORBIDDEN = "forbidden"  # the caller may not do this
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"  # clashes with the state (a duplicate, a balance, the ledger)
    TOO_LARGE = "too_large"
    TIMEOUT = "timeout"  # the client did not send its request in time
    RATE_LIMITED = "rate_limited"
    UNAVAILABLE = "unavailable"  # the chain or the deployment cannot be reached
    INTERNAL = "internal"  # the gateway itself failed (or is set up wrongly)


class ErrorCode(StrEnum):
    """Every machine code the gateway answers with; `CATEGORY` gives each its category."""

    # the request itself
    MALFORMED_JSON = "malformed_json"
    VALIDATION_ERROR = "validation_error"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    REQUEST_TIMEOUT = "request_timeout"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    HTTP_ERROR = "http_error"
    INVALID_REQUEST = "invalid_request"
    # API keys and roles
    MISSING_API_KEY = "missing_api_key"
    INVALID_API_KEY = "invalid_api_key"
    UNAUTHORIZED = "unauthorized"
    WRONG_ROLE = "wrong_role"
    FORBIDDEN = "forbidden"
    RATE_LIMITED = "rate_limited"
    UNKNOWN_API_KEY = "unknown_api_key"
    LAST_ADMIN_KEY = "last_admin_key"
    # partners and members
    UNKNOWN_PARTNER = "unknown_partner"
    INVALID_PARTNER = "invalid_partner"
    DUPLICATE_PARTNER = "duplicate_partner"
    OPERATOR_KEY_ABSENT = "operator_key_absent"
    # campaigns (r2)
    UNKNOWN_CAMPAIGN = "unknown_campaign"
    INVALID_CAMPAIGN = "invalid_campaign"
    UNKNOWN_MEMBER = "unknown_member"
    DUPLICATE_MEMBER = "duplicate_member"
    DUPLICATE_ADDRESS = "duplicate_address"
    PIN_REQUIRED = "pin_required"
    INVALID_PIN = "invalid_pin"
    PIN_LOCKED = "pin_locked"
    # operations
    IDEMPOTENCY_MISMATCH = "idempotency_mismatch"
    DUPLICATE_RECEIPT = "duplicate_receipt"
    WRONG_CURRENCY = "wrong_currency"
    ZERO_POINTS = "zero_points"
    AMOUNT_OUT_OF_RANGE = "amount_out_of_range"
    SIGNATURE_REQUIRED = "signature_required"
    INVALID_SIGNATURE = "invalid_signature"
    SIGNATURE_EXPIRED = "signature_expired"
    NONCE_ALREADY_USED = "nonce_already_used"
    INSUFFICIENT_POINTS = "insufficient_points"
    UNKNOWN_RECEIPT = "unknown_receipt"
    EARN_NOT_CONFIRMED = "earn_not_confirmed"
    REVERSAL_EXCEEDS_EARN = "reversal_exceeds_earn"
    UNKNOWN_OPERATION = "unknown_operation"
    CONFLICT = "conflict"
    # (r2) awards, refunds, migrations
    INVALID_REASON = "invalid_reason"
    UNKNOWN_REDEMPTION = "unknown_redemption"
    REDEMPTION_NOT_CONFIRMED = "redemption_not_confirmed"
    REFUND_EXCEEDS_REDEMPTION = "refund_exceeds_redemption"
    MEMBER_BUSY = "member_busy"
    MIGRATION_IN_PROGRESS = "migration_in_progress"
    MEMBER_MIGRATED = "member_migrated"
    ADDRESS_IN_USE = "address_in_use"
    # batch intake (POST /v1/batches)
    UNSUPPORTED_CONTENT_TYPE = "unsupported_content_type"
    MALFORMED_BATCH = "malformed_batch"
    TOO_MANY_RECORDS = "too_many_records"
    MALFORMED_RECORD = "malformed_record"
    KIND_NOT_SUPPORTED = "kind_not_supported"
    UNKNOWN_BATCH = "unknown_batch"
    # the chain and the ledger
    # the operator console (r2)
    UNKNOWN_CHANGE = "unknown_change"
    CHANGE_NOT_DUE = "change_not_due"
    CHANGE_NOT_PENDING = "change_not_pending"
    INVALID_TIER_TABLE = "invalid_tier_table"
    INVALID_TIER = "invalid_tier"
    INVALID_CHANGE = "invalid_change"
    ALREADY_PAUSED = "already_paused"
    NOT_PAUSED = "not_paused"
    CHAIN_UNAVAILABLE = "chain_unavailable"
    NOT_DEPLOYED = "not_deployed"
    LEDGER_REVERT = "ledger_revert"
    # audit
    UNKNOWN_JOB = "unknown_job"
    UNKNOWN_TRANSACTION = "unknown_transaction"
    UNKNOWN_EVENT = "unknown_event"
    NOT_A_RECEIPT = "not_a_receipt"
    # webhooks
    INVALID_WEBHOOK_URL = "invalid_webhook_url"
    INVALID_WEBHOOK_EVENTS = "invalid_webhook_events"
    TOO_MANY_WEBHOOKS = "too_many_webhooks"
    UNKNOWN_WEBHOOK = "unknown_webhook"
    UNKNOWN_DELIVERY = "unknown_delivery"
    ALREADY_DELIVERED = "already_delivered"
    # the member and auditor pages
    BAD_INPUT = "bad_input"
    TOO_LARGE = "too_large"
    # the gateway itself, and its commands
    INTERNAL_ERROR = "internal_error"
    LOYALTY_ERROR = "loyalty_error"
    CONFIGURATION_ERROR = "configuration_error"
    COMPILE_ERROR = "compile_error"
    REINDEX_REFUSED = "reindex_refused"


C, E = Category, ErrorCode
CATEGORY: dict[ErrorCode, Category] = {
    E.MALFORMED_JSON: C.MALFORMED,
    E.VALIDATION_ERROR: C.INVALID,
    E.PAYLOAD_TOO_LARGE: C.TOO_LARGE,
    E.REQUEST_TIMEOUT: C.TIMEOUT,
    E.NOT_FOUND: C.NOT_FOUND,
    E.METHOD_NOT_ALLOWED: C.MALFORMED,
    E.HTTP_ERROR: C.MALFORMED,
    E.INVALID_REQUEST: C.INVALID,
    E.MISSING_API_KEY: C.UNAUTHENTICATED,
    E.INVALID_API_KEY: C.UNAUTHENTICATED,
    E.UNAUTHORIZED: C.UNAUTHENTICATED,
    E.WRONG_ROLE: C.FORBIDDEN,
    E.FORBIDDEN: C.FORBIDDEN,
    E.RATE_LIMITED: C.RATE_LIMITED,
    E.UNKNOWN_API_KEY: C.NOT_FOUND,
    E.LAST_ADMIN_KEY: C.CONFLICT,
    E.UNKNOWN_PARTNER: C.NOT_FOUND,
    E.INVALID_PARTNER: C.INVALID,
    E.UNKNOWN_CAMPAIGN: C.NOT_FOUND,
    E.INVALID_CAMPAIGN: C.INVALID,
    E.DUPLICATE_PARTNER: C.CONFLICT,
    E.OPERATOR_KEY_ABSENT: C.CONFLICT,
    E.UNKNOWN_MEMBER: C.NOT_FOUND,
    E.DUPLICATE_MEMBER: C.CONFLICT,
    E.DUPLICATE_ADDRESS: C.CONFLICT,
    E.PIN_REQUIRED: C.INVALID,
    E.INVALID_PIN: C.FORBIDDEN,
    E.PIN_LOCKED: C.FORBIDDEN,
    E.IDEMPOTENCY_MISMATCH: C.INVALID,
    E.DUPLICATE_RECEIPT: C.CONFLICT,
    E.WRONG_CURRENCY: C.INVALID,
    E.ZERO_POINTS: C.INVALID,
    E.AMOUNT_OUT_OF_RANGE: C.INVALID,
    E.SIGNATURE_REQUIRED: C.INVALID,
    E.INVALID_SIGNATURE: C.INVALID,
    E.SIGNATURE_EXPIRED: C.INVALID,
    E.NONCE_ALREADY_USED: C.CONFLICT,
    E.INSUFFICIENT_POINTS: C.CONFLICT,
    E.UNKNOWN_RECEIPT: C.NOT_FOUND,
    E.EARN_NOT_CONFIRMED: C.CONFLICT,
    E.REVERSAL_EXCEEDS_EARN: C.INVALID,
    E.UNKNOWN_OPERATION: C.NOT_FOUND,
    E.CONFLICT: C.CONFLICT,
    E.INVALID_REASON: C.INVALID,
    E.UNKNOWN_REDEMPTION: C.NOT_FOUND,
    E.REDEMPTION_NOT_CONFIRMED: C.CONFLICT,
    E.REFUND_EXCEEDS_REDEMPTION: C.INVALID,
    E.MEMBER_BUSY: C.CONFLICT,
    E.MIGRATION_IN_PROGRESS: C.CONFLICT,
    E.MEMBER_MIGRATED: C.CONFLICT,
    E.ADDRESS_IN_USE: C.CONFLICT,
    E.UNKNOWN_CHANGE: C.NOT_FOUND,
    E.CHANGE_NOT_DUE: C.CONFLICT,
    E.CHANGE_NOT_PENDING: C.CONFLICT,
    E.INVALID_TIER_TABLE: C.INVALID,
    E.INVALID_TIER: C.INVALID,
    E.INVALID_CHANGE: C.INVALID,
    E.ALREADY_PAUSED: C.CONFLICT,
    E.NOT_PAUSED: C.CONFLICT,
    E.UNSUPPORTED_CONTENT_TYPE: C.MALFORMED,
    E.MALFORMED_BATCH: C.MALFORMED,
    E.TOO_MANY_RECORDS: C.TOO_LARGE,
    E.MALFORMED_RECORD: C.MALFORMED,
    E.KIND_NOT_SUPPORTED: C.INVALID,
    E.UNKNOWN_BATCH: C.NOT_FOUND,
    E.CHAIN_UNAVAILABLE: C.UNAVAILABLE,
    E.NOT_DEPLOYED: C.UNAVAILABLE,
    E.LEDGER_REVERT: C.CONFLICT,
    E.UNKNOWN_JOB: C.NOT_FOUND,
    E.UNKNOWN_TRANSACTION: C.NOT_FOUND,
    E.UNKNOWN_EVENT: C.NOT_FOUND,
    E.NOT_A_RECEIPT: C.INVALID,
    E.INVALID_WEBHOOK_URL: C.INVALID,
    E.INVALID_WEBHOOK_EVENTS: C.INVALID,
    E.TOO_MANY_WEBHOOKS: C.CONFLICT,
    E.UNKNOWN_WEBHOOK: C.NOT_FOUND,
    E.UNKNOWN_DELIVERY: C.NOT_FOUND,
    E.ALREADY_DELIVERED: C.CONFLICT,
    E.BAD_INPUT: C.MALFORMED,
    E.TOO_LARGE: C.TOO_LARGE,
    E.INTERNAL_ERROR: C.INTERNAL,
    E.LOYALTY_ERROR: C.INTERNAL,
    E.CONFIGURATION_ERROR: C.INTERNAL,
    E.COMPILE_ERROR: C.INTERNAL,
    E.REINDEX_REFUSED: C.CONFLICT,
}


class LoyaltyError(Exception):
    """Root of every error the gateway raises on purpose.

    `code` is the machine code (an `ErrorCode`) the API puts in its error JSON; `category`
    what kind of error it is (the edge's table makes it an HTTP status); `details` extra
    fields for the client. A raise site may give a more precise code of the same category.
    """

    code: ErrorCode = ErrorCode.LOYALTY_ERROR

    def __init__(self, message: str, *, code: ErrorCode | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details

    @property
    def category(self) -> Category:
        return CATEGORY[self.code]


class ConfigError(LoyaltyError):
    """The settings or the data directory do not allow this (a setup problem, not a request's)."""

    code = ErrorCode.CONFIGURATION_ERROR


class ChainFault(LoyaltyError):
    """The chain did not do what was asked: it refused (a revert: `LedgerRevert`, code
    ledger_revert) or could not be reached (`ChainError`, chain_unavailable). Catch this to
    handle both; each subclass carries its own code."""


class ChainError(ChainFault):
    """The chain could not be reached or did not answer as a node should."""

    code = ErrorCode.CHAIN_UNAVAILABLE


class CompileError(LoyaltyError):
    code = ErrorCode.COMPILE_ERROR


class NotDeployed(LoyaltyError):
    code = ErrorCode.NOT_DEPLOYED


class NotFound(LoyaltyError):
    """No such partner, member, operation, receipt, key or job."""

    code = ErrorCode.NOT_FOUND


class Forbidden(LoyaltyError):
    """The caller is known but may not do this (its role, a wrong or locked PIN)."""

    code = ErrorCode.FORBIDDEN


class Unauthorized(LoyaltyError):
    """No API key, or one that is unknown or revoked."""

    code = ErrorCode.UNAUTHORIZED


class Conflict(LoyaltyError):
    """The request clashes with what is already there (a duplicate, a balance, the ledger's state)."""

    code = ErrorCode.CONFLICT


class Invalid(LoyaltyError):
    """Well-formed input that the rules refuse (wrong currency, bad signature...)."""

    code = ErrorCode.INVALID_REQUEST


class RateLimited(LoyaltyError):
    code = ErrorCode.RATE_LIMITED


class TooLarge(LoyaltyError):
    code = ErrorCode.TOO_LARGE


__all__ = [
    "CATEGORY",
    "Category",
    "ChainError",
    "ChainFault",
    "CompileError",
    "ConfigError",
    "Conflict",
    "ErrorCode",
    "Forbidden",
    "Invalid",
    "LoyaltyError",
    "NotDeployed",
    "NotFound",
    "RateLimited",
    "TooLarge",
    "Unauthorized",
]
