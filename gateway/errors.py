"""The single root of the gateway's errors; each carries a machine code for the API edge."""

from __future__ import annotations

from typing import Any


class LoyaltyError(Exception):
    """Root of every error the gateway raises on purpose.

    `code` is the snake_case code the API puts in its error JSON; `status` the HTTP status
    it maps to; `details` extra fields for the client.
    """

    code = "loyalty_error"
    status = 500

    def __init__(self, message: str, *, code: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details


class ConfigError(LoyaltyError):
    code = "configuration_error"


class ChainError(LoyaltyError):
    """The chain could not be reached or refused a transaction."""

    code = "chain_unavailable"
    status = 503


class CompileError(LoyaltyError):
    code = "compile_error"


class NotDeployed(LoyaltyError):
    code = "not_deployed"
    status = 503


class NotFound(LoyaltyError):
    code = "not_found"
    status = 404


class Forbidden(LoyaltyError):
    code = "forbidden"
    status = 403


class Unauthorized(LoyaltyError):
    code = "unauthorized"
    status = 401


class Conflict(LoyaltyError):
    code = "conflict"
    status = 409


class Invalid(LoyaltyError):
    """Well-formed input that the rules refuse (wrong currency, bad signature...)."""

    code = "invalid_request"
    status = 422


class RateLimited(LoyaltyError):
    code = "rate_limited"
    status = 429
