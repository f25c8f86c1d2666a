"""Typed exceptions of the partner SDK: the gateway's error JSON, and what the SDK itself detects.

The gateway answers every refusal as `{"error": {"code": "...", "message": "...", ...}}` with
an HTTP status; `error_from_response` turns that into the most specific class below, keeping
status, code, message and the extra fields (`details`). Catch `GatewayError` for any refusal,
or a subclass for one condition (`DuplicateReceipt`, `InsufficientPoints`, `InvalidPin`...).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from partners.models import Operation


class PartnerSdkError(Exception):
    """Root of every exception the SDK raises on purpose."""


@dataclass(frozen=True)
class PreparedRequest:
    """A write exactly as sent: resending it (same key, same bytes) can never apply it twice."""

    method: str
    path: str
    body: bytes
    idempotency_key: str


class GatewayUnreachable(PartnerSdkError):
    """Every attempt failed without an answer (timeouts, refused or dropped connections).

    A write may or may not have been accepted: `request` is what was sent, and resending it
    with `client.resend(request)` is safe (the gateway answers the first acceptance again).
    """

    def __init__(self, message: str, *, request: PreparedRequest | None = None, attempts: int = 0) -> None:
        super().__init__(message)
        self.request = request
        self.attempts = attempts


class GatewayError(PartnerSdkError):
    """The gateway refused a request; `code` is its machine code, `details` its extra fields."""

    status: int
    code: str
    message: str
    details: dict[str, Any]

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: dict[str, Any] | None = None,
        *,
        request: PreparedRequest | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message
        self.details = details or {}
        self.request = request


class BadRequest(GatewayError):
    """400: the body was not JSON (the SDK always sends JSON, so this means a proxy mangled it)."""


class Unauthorized(GatewayError):
    """401: no API key, or one that is unknown or revoked."""


class Forbidden(GatewayError):
    """403: the key's role may not do this (`wrong_role`), or a PIN check failed."""


class InvalidPin(Forbidden):
    """403 `invalid_pin`: the custodial member's PIN is wrong (five in a row lock redemptions)."""


class PinLocked(Forbidden):
    """403 `pin_locked`: too many wrong PINs; the coalition operator can unlock the member."""


class NotFound(GatewayError):
    """404: unknown member, operation, receipt or path."""


class Conflict(GatewayError):
    """409: the request clashes with the ledger's state."""


class DuplicateReceipt(Conflict):
    """409 `duplicate_receipt`: this receipt already has an operation of this kind.

    `operation_id` names the existing operation: a till that lost track of an earn can
    follow that one instead of issuing again.
    """

    @property
    def operation_id(self) -> str | None:
        value = self.details.get("operation_id")
        return str(value) if value is not None else None


class InsufficientPoints(Conflict):
    """409 `insufficient_points`: the member's balance (less what is already being spent) is too low."""

    @property
    def balance(self) -> int | None:
        value = self.details.get("balance")
        return int(value) if value is not None else None


class EarnNotConfirmed(Conflict):
    """409 `earn_not_confirmed`: a reversal's earn is not on the chain yet; wait for it first."""


class RedemptionNotConfirmed(Conflict):
    """409 `redemption_not_confirmed`: a refund's redemption is not on the chain yet; wait for it first."""


class MemberBusy(Conflict):
    """409 `member_busy` or `migration_in_progress`: a migration waits for the member's operations
    on their way to the chain, and the member's new operations wait for its migration."""


class ValidationFailed(GatewayError):
    """422: the request does not match the schema, or the rules refuse it (wrong currency,
    bad signature, a refund larger than the purchase...)."""


class IdempotencyMismatch(ValidationFailed):
    """422 `idempotency_mismatch`: this Idempotency-Key was already used with another body."""


class InvalidSignature(ValidationFailed):
    """422 `invalid_signature`: the signature is not the expected signer's over this message."""


class PayloadTooLarge(GatewayError):
    """413: the body is over the gateway's limit."""


class RequestTimeout(GatewayError):
    """408 `request_timeout`: the gateway stopped waiting for the rest of the request body."""


class RateLimited(GatewayError):
    """429: too many requests for this API key (the SDK already retried, honouring Retry-After)."""

    @property
    def retry_after(self) -> float | None:
        value = self.details.get("retry_after")
        return float(value) if value is not None else None


class ServerError(GatewayError):
    """5xx: the gateway failed (the SDK already retried); nothing was accepted by this attempt."""


class ChainUnavailable(ServerError):
    """503: the chain (or the ledger deployment) is not reachable from the gateway."""


class OperationRejected(PartnerSdkError):
    """An accepted operation ended `rejected` on-chain (the contract refused it): see `operation.error`."""

    def __init__(self, operation: Operation) -> None:
        error = operation.error
        reason = f"{error.code}: {error.message}" if error else "no reason given"
        super().__init__(f"operation {operation.operation_id} was rejected ({reason})")
        self.operation = operation


class WaitTimeout(PartnerSdkError, TimeoutError):
    """The operation was still in flight when the wait ended; `operation` is its last state."""

    def __init__(self, operation: Operation, timeout: float) -> None:
        super().__init__(f"operation {operation.operation_id} still {operation.status} after {timeout:g} s")
        self.operation = operation


# Every machine code the gateway answers with, and the exception it becomes. The SDK keeps its
# own table (it never imports the gateway); tests/test_error_codes.py checks that it knows
# every code of the gateway's catalogue, with a class of the right status.
_BY_CODE: dict[str, type[GatewayError]] = {
    # 400: the request could not be read
    "malformed_json": BadRequest,
    "bad_input": BadRequest,
    "method_not_allowed": GatewayError,
    "http_error": GatewayError,
    "unsupported_content_type": BadRequest,
    "malformed_batch": BadRequest,
    "malformed_record": BadRequest,  # a batch's record (line) that could not be read
    # 401
    "missing_api_key": Unauthorized,
    "invalid_api_key": Unauthorized,
    "unauthorized": Unauthorized,
    # 403
    "wrong_role": Forbidden,
    "forbidden": Forbidden,
    "invalid_pin": InvalidPin,
    "pin_locked": PinLocked,
    # 404
    "not_found": NotFound,
    "unknown_api_key": NotFound,
    "unknown_partner": NotFound,
    "unknown_member": NotFound,
    "unknown_campaign": NotFound,
    "invalid_campaign": ValidationFailed,
    "unknown_receipt": NotFound,
    "unknown_operation": NotFound,
    "unknown_job": NotFound,
    "unknown_transaction": NotFound,
    "unknown_event": NotFound,
    "unknown_webhook": NotFound,
    "unknown_delivery": NotFound,
    "unknown_redemption": NotFound,
    "unknown_change": NotFound,
    "unknown_batch": NotFound,
    # 408
    "request_timeout": RequestTimeout,
    # 409
    "duplicate_receipt": DuplicateReceipt,
    "insufficient_points": InsufficientPoints,
    "earn_not_confirmed": EarnNotConfirmed,
    "duplicate_member": Conflict,
    "duplicate_address": Conflict,
    "duplicate_partner": Conflict,
    "operator_key_absent": Conflict,
    "conflict": Conflict,
    "ledger_revert": Conflict,
    "reindex_refused": Conflict,
    "too_many_webhooks": Conflict,
    "already_delivered": Conflict,
    "last_admin_key": Conflict,
    "nonce_already_used": Conflict,
    "redemption_not_confirmed": RedemptionNotConfirmed,
    "member_busy": MemberBusy,
    "migration_in_progress": MemberBusy,
    "member_migrated": Conflict,
    "address_in_use": Conflict,
    "change_not_due": Conflict,
    "change_not_pending": Conflict,
    "already_paused": Conflict,
    "not_paused": Conflict,
    # 413
    "payload_too_large": PayloadTooLarge,
    "too_large": PayloadTooLarge,
    "too_many_records": PayloadTooLarge,
    # 422
    "validation_error": ValidationFailed,
    "invalid_request": ValidationFailed,
    "idempotency_mismatch": IdempotencyMismatch,
    "invalid_signature": InvalidSignature,
    "signature_expired": ValidationFailed,
    "invalid_partner": ValidationFailed,
    "pin_required": ValidationFailed,
    "wrong_currency": ValidationFailed,
    "zero_points": ValidationFailed,
    "amount_out_of_range": ValidationFailed,
    "signature_required": ValidationFailed,
    "reversal_exceeds_earn": ValidationFailed,
    "refund_exceeds_redemption": ValidationFailed,
    "invalid_reason": ValidationFailed,
    "not_a_receipt": ValidationFailed,
    "invalid_webhook_url": ValidationFailed,
    "invalid_webhook_events": ValidationFailed,
    "invalid_tier_table": ValidationFailed,
    "invalid_tier": ValidationFailed,
    "invalid_change": ValidationFailed,
    "kind_not_supported": ValidationFailed,
    # 429
    "rate_limited": RateLimited,
    # 5xx
    "chain_unavailable": ChainUnavailable,
    "not_deployed": ChainUnavailable,
    "internal_error": ServerError,
    "loyalty_error": ServerError,
    "configuration_error": ServerError,
    "compile_error": ServerError,
}

_BY_STATUS: dict[int, type[GatewayError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    408: RequestTimeout,
    413: PayloadTooLarge,
    422: ValidationFailed,
    429: RateLimited,
    503: ChainUnavailable,
}


def error_from_response(
    status: int, payload: Any, *, retry_after: float | None = None, request: PreparedRequest | None = None
) -> GatewayError:
    """The exception for an error answer; `payload` is the decoded body (or None if not JSON)."""
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict):
        code = str(error.get("code") or f"http_{status}")
        message = str(error.get("message") or "")
        details = {k: v for k, v in error.items() if k not in ("code", "message")}
    else:  # not the gateway's own shape: a proxy or load balancer answered
        code, message, details = f"http_{status}", f"HTTP {status} without the gateway's error body", {}
    if retry_after is not None:
        details.setdefault("retry_after", retry_after)
    cls = _BY_CODE.get(code) or _BY_STATUS.get(status) or (ServerError if status >= 500 else GatewayError)
    # A code's class fits only its own status family (a 404 is never a Conflict).
    if not issubclass(cls, _BY_STATUS.get(status, GatewayError)):
        cls = _BY_STATUS.get(status, ServerError if status >= 500 else GatewayError)
    return cls(status, code, message, details, request=request)
