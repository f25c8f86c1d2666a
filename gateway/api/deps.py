"""The API's dependencies as types: the runtime, the authenticated caller by role, and the
Idempotency-Key of a write.

No `from __future__ import annotations` in the API's modules: FastAPI reads the annotations
at runtime. The dependencies are async and read the header themselves: each level of
FastAPI's dependency solving costs the busiest endpoint noticeable time per request, and a
sync dependency would hop to a worker thread.
"""

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from gateway.accounts.keys import authenticate_and_remember, cached_caller
from gateway.app.runtime import Runtime
from gateway.core.errors import ErrorCode, Forbidden, RateLimited
from gateway.core.ratelimit import TokenBuckets
from gateway.core.security import Caller
from gateway.operations.idempotency import Response, idempotent, idempotent_async


def runtime_of(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


async def _runtime(request: Request) -> Runtime:
    return runtime_of(request)


RuntimeDep = Annotated[Runtime, Depends(_runtime)]


# The OpenAPI document's security scheme: `Authorization: Bearer <api key>`. Not an error of
# its own when the header is missing: `authenticated` answers 401 in the gateway's shape.
bearer = HTTPBearer(
    scheme_name="ApiKey",
    bearerFormat="lk_<id>_<secret>",
    description="An API key (partner, auditor or admin) as `Authorization: Bearer <key>`",
    auto_error=False,
)
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


async def authenticated(request: Request, credentials: HTTPAuthorizationCredentials | None) -> Caller:
    """The caller of `Authorization: Bearer <key>`, within its rate limit. No database read for
    a key seen in the last seconds: the hot path of every request stays on the event loop."""
    runtime = runtime_of(request)
    key = credentials.credentials.strip() if credentials is not None else None
    who = cached_caller(runtime, key)
    if who is None:
        who = await run_in_threadpool(authenticate_and_remember, runtime, key)
    limiter: TokenBuckets = request.app.state.limiter
    if not limiter.allow(who.key_id):
        raise RateLimited("too many requests for this API key; slow down")
    return who


async def _any_caller(request: Request, credentials: BearerDep) -> Caller:
    return await authenticated(request, credentials)


def role(*roles: str) -> Callable[..., Awaitable[Caller]]:
    async def check(request: Request, credentials: BearerDep) -> Caller:
        who = await authenticated(request, credentials)
        if who.role not in roles:
            raise Forbidden(f"this needs a {' or '.join(roles)} key, not {who.role}", code=ErrorCode.WRONG_ROLE)
        return who

    return check


AnyCaller = Annotated[Caller, Depends(_any_caller)]
Admin = Annotated[Caller, Depends(role("admin"))]
PartnerCaller = Annotated[Caller, Depends(role("partner"))]
Auditor = Annotated[Caller, Depends(role("auditor", "admin"))]


class Idempotency:
    """A write's Idempotency-Key: runs the write and stores its answer with it, in one
    transaction, under the caller's scope (a partner, or the key itself)."""

    def __init__(self, runtime: Runtime, key: str | None) -> None:
        self.runtime, self.key = runtime, key

    @staticmethod
    def scope(who: Caller) -> str:
        return f"partner:{who.partner_id}" if who.partner_id is not None else f"key:{who.key_id}"

    def store(self, who: Caller, body: BaseModel) -> Callable[[Callable[[Session], Response]], Response]:
        """`effect -> Response`, for domain functions that run the write themselves."""

        def run(effect: Callable[[Session], Response]) -> Response:
            return idempotent(self.runtime, scope=self.scope(who), key=self.key, body=body.model_dump(), effect=effect)

        return run

    def run(self, who: Caller, body: BaseModel, effect: Callable[[Session], Response]) -> JSONResponse:
        return reply(self.store(who, body)(effect))

    async def run_async(
        self,
        who: Caller,
        body: BaseModel,
        effect: Callable[[Session], Response],
        *,
        refuses_before_writing: bool = False,
    ) -> JSONResponse:
        """`run` waiting for the group commit on the event loop, without a thread."""
        response = await idempotent_async(
            self.runtime,
            scope=self.scope(who),
            key=self.key,
            body=body.model_dump(),
            effect=effect,
            refuses_before_writing=refuses_before_writing,
        )
        return reply(response)


IdempotencyKey = Header(
    alias="Idempotency-Key",
    min_length=1,
    max_length=255,
    pattern=r"^[!-~]([ -~]*[!-~])?$",  # visible ASCII, no blank key
    description="Same key and same body: the first answer again. Same key, other body: 422.",
)


async def _idempotency(request: Request, idempotency_key: Annotated[str | None, IdempotencyKey] = None) -> Idempotency:
    return Idempotency(runtime_of(request), idempotency_key)


IdempotencyDep = Annotated[Idempotency, Depends(_idempotency)]


def reply(response: Response) -> JSONResponse:
    return JSONResponse(response.body, status_code=response.status)
