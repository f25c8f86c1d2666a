"""ASGI middleware of the API: the request body's size and time limits, and the request log."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.api.errors import error_response
from gateway.core.errors import ErrorCode, LoyaltyError

MAX_BODY_BYTES = 64 * 1024
MAX_BATCH_BODY_BYTES = 16 * 1024 * 1024  # POST /v1/batches: 10,000 records of up to ~1.6 KiB
BODY_TIMEOUT_SECONDS = 10.0

access = logging.getLogger("gateway.access")


class PayloadTooLarge(LoyaltyError):
    code = ErrorCode.PAYLOAD_TOO_LARGE


class BodyTimeout(LoyaltyError):
    code = ErrorCode.REQUEST_TIMEOUT


class BodyLimit:
    """Refuses bodies over `limit` bytes: at once when Content-Length says so, else while a
    chunked body streams in (it is never read whole). And bodies that take longer than
    `timeout` seconds from the request's start to arrive: a client that sends half a body and
    stalls gets 408 and its connection closed, instead of holding it (uvicorn's keep-alive
    timeout only covers the time between requests). Plain ASGI: Starlette's
    BaseHTTPMiddleware costs a task group per request."""

    def __init__(
        self, app: ASGIApp, limit: int, timeout: float = BODY_TIMEOUT_SECONDS, paths: dict[str, int] | None = None
    ) -> None:
        """`paths`: larger limits for these exact paths (a batch file)."""
        self.app, self.default, self.timeout, self.paths = app, limit, timeout, paths or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.paths.get(scope["path"], self.default)
        length = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if length is not None and (not length.isdigit() or int(length) > limit):
            response = error_response(413, ErrorCode.PAYLOAD_TOO_LARGE, f"bodies are limited to {limit} bytes")
            await response(scope, receive, send)
            return
        received = 0
        complete = False
        deadline = asyncio.get_running_loop().time() + self.timeout

        async def bounded() -> Message:
            nonlocal received, complete
            if complete:  # the body is in: the app may wait for the disconnect as long as it likes
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                # Raised inside the route's body read; the error handlers answer 408.
                raise BodyTimeout(f"the request body did not arrive within {self.timeout:g} s") from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                complete = not message.get("more_body", False)
                if received > limit:
                    raise PayloadTooLarge(f"bodies are limited to {limit} bytes")
            return message

        await self.app(scope, bounded, send)


class RequestLog:
    """One log line per request (method, path, status, milliseconds) on `gateway.access`, and
    the latency of each route (its path template, so ids do not make new series) to `observe`."""

    def __init__(self, app: ASGIApp, observe: Callable[[str, str, int, float], None] | None = None) -> None:
        self.app, self.observe = app, observe

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            seconds = time.perf_counter() - start
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            if self.observe is not None:
                self.observe(scope["method"], template, status, seconds)
            if access.isEnabledFor(logging.INFO):
                client = scope.get("client") or ("-", 0)
                query = scope.get("query_string", b"").decode("latin-1")
                path = scope["path"] + (f"?{query}" if query else "")
                access.info('%s "%s %s" %d %.1f ms', client[0], scope["method"], path, status, seconds * 1000)
