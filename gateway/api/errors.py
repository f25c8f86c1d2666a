"""Domain errors become JSON answers here and only here: `{"error": {"code", "message", ...}}`."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway.core.errors import Category, ErrorCode, LoyaltyError

log = logging.getLogger("gateway.api")

# The one table from a domain error's category to its HTTP status (the pages use it too).
STATUS: dict[Category, int] = {
    Category.MALFORMED: 400,
    Category.UNAUTHENTICATED: 401,
    Category.FORBIDDEN: 403,
    Category.NOT_FOUND: 404,
    Category.CONFLICT: 409,
    Category.TOO_LARGE: 413,
    Category.TIMEOUT: 408,
    Category.INVALID: 422,
    Category.RATE_LIMITED: 429,
    Category.INTERNAL: 500,
    Category.UNAVAILABLE: 503,
}
# Answers that tell the client to come back: the token bucket refills within a second, and
# the chain may be back as soon.
RETRY_LATER = {Category.RATE_LIMITED, Category.UNAVAILABLE}


def http_status(exc: LoyaltyError) -> int:
    return STATUS[exc.category]


def error_response(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, **extra}}, status_code=status)


def install(app: FastAPI) -> None:
    """The app's exception handlers: domain errors, schema errors, HTTP errors, anything else."""

    @app.exception_handler(LoyaltyError)
    async def _domain(_request: Request, exc: LoyaltyError) -> JSONResponse:
        response = error_response(http_status(exc), exc.code, exc.message, **exc.details)
        if exc.category in RETRY_LATER:
            response.headers["Retry-After"] = "1"
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return error_response(400, ErrorCode.MALFORMED_JSON, "the body is not valid JSON")
        details = [
            {"field": ".".join(str(p) for p in e.get("loc", ())[1:]), "problem": e.get("msg", "")} for e in errors
        ]
        return error_response(422, ErrorCode.VALIDATION_ERROR, "the request does not match the schema", details=details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        cause = exc.__cause__
        if isinstance(cause, LoyaltyError):  # FastAPI wraps what the body read raised
            response = error_response(http_status(cause), cause.code, cause.message)
            if cause.category is Category.TIMEOUT:  # the rest of a stalled body is not waited for
                response.headers["Connection"] = "close"
            return response
        code = {404: ErrorCode.NOT_FOUND, 405: ErrorCode.METHOD_NOT_ALLOWED}.get(exc.status_code, ErrorCode.HTTP_ERROR)
        response = error_response(exc.status_code, code, str(exc.detail))
        response.headers.update(exc.headers or {})  # a 405's Allow, a 401's WWW-Authenticate
        return response

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return error_response(500, ErrorCode.INTERNAL_ERROR, "the gateway failed; the request was not accepted")
