"""ASGI middleware of the API: the request body limit."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.api.errors import error_response
from gateway.core.errors import ErrorCode, LoyaltyError

MAX_BODY_BYTES = 64 * 1024


class PayloadTooLarge(LoyaltyError):
    code = ErrorCode.PAYLOAD_TOO_LARGE


class BodyLimit:
    """Refuses bodies over `limit` bytes: at once when Content-Length says so, else while a
    chunked body streams in (it is never read whole). Plain ASGI: Starlette's
    BaseHTTPMiddleware costs a task group per request."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            response = error_response(413, ErrorCode.PAYLOAD_TOO_LARGE, f"bodies are limited to {self.limit} bytes")
            await response(scope, receive, send)
            return
        received = 0

        async def bounded() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    # Raised inside the route's body read; the error handlers answer 413.
                    raise PayloadTooLarge(f"bodies are limited to {self.limit} bytes")
            return message

        await self.app(scope, bounded, send)
