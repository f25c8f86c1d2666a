"""The v1 HTTP API (SPEC section 6). Domain errors become JSON here and only here.

No `from __future__ import annotations` here: FastAPI reads the route annotations at
runtime, and the dependency aliases are local to `create_app`.
"""

import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from sqlalchemy import func, select, text
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.api import audit_jobs
from gateway.api.schemas import (
    ApiKeyCreate,
    EarnCreate,
    MemberCreate,
    PartnerCreate,
    PinAuthorization,
    RedemptionCreate,
    ReversalCreate,
    Signed,
)
from gateway.chain.ledger import artifact
from gateway.db.models import ApiKey, Batch, Operation
from gateway.errors import Forbidden, Invalid, LoyaltyError, RateLimited
from gateway.ledger import service
from gateway.ledger.runtime import Runtime
from gateway.ledger.service import Caller, SignedFields
from gateway.ledger.submitter import Metrics, Submitter, queue_depth
from gateway.web.pages import router as pages

log = logging.getLogger("gateway.api")
MAX_BODY_BYTES = 64 * 1024


def _error(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, **extra}}, status_code=status)


class RateLimiter:
    """A token bucket per API key, in this process."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.buckets: dict[str, tuple[float, float]] = {}
        self.lock = threading.Lock()

    def allow(self, key: str) -> bool:
        now = time.monotonic()
        with self.lock:
            tokens, last = self.buckets.get(key, (2 * self.rate, now))
            tokens = min(2 * self.rate, tokens + (now - last) * self.rate)
            if tokens < 1:
                self.buckets[key] = (tokens, now)
                return False
            self.buckets[key] = (tokens - 1, now)
            return True


class PayloadTooLarge(LoyaltyError):
    status, code = 413, "payload_too_large"


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
            response = _error(413, "payload_too_large", f"bodies are limited to {self.limit} bytes")
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


def create_app(runtime: Runtime, *, run_submitter: bool = True, rate_per_second: float | None = None) -> FastAPI:
    metrics = Metrics()
    submitter = Submitter(runtime, metrics)
    limiter = RateLimiter(rate_per_second or runtime.settings.gateway.rate_limit_per_second)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        stop = threading.Event()
        thread = threading.Thread(target=submitter.run, args=(stop,), name="submitter", daemon=True)
        runtime.writer.start()
        if run_submitter:
            thread.start()
        yield
        stop.set()
        if run_submitter:
            thread.join(timeout=10)
        runtime.writer.stop()

    app = FastAPI(
        title="Coalition points gateway",
        version="1",
        lifespan=lifespan,
        description="Partners issue and redeem coalition points; every point is on-chain. "
        'Errors are JSON: {"error": {"code", "message"}}.',
    )
    app.state.runtime, app.state.submitter, app.state.metrics = runtime, submitter, metrics

    # -------------------------------------------------------------- errors

    @app.exception_handler(LoyaltyError)
    async def _domain(_request: Request, exc: LoyaltyError) -> JSONResponse:
        response = _error(exc.status, exc.code, exc.message, **exc.details)
        if exc.status in (429, 503):
            response.headers["Retry-After"] = "1"  # the token bucket refills within a second
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return _error(400, "malformed_json", "the body is not valid JSON")
        details = [
            {"field": ".".join(str(p) for p in e.get("loc", ())[1:]), "problem": e.get("msg", "")} for e in errors
        ]
        return _error(422, "validation_error", "the request does not match the schema", details=details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if isinstance(exc.__cause__, LoyaltyError):  # FastAPI wraps what the body read raised
            return _error(exc.__cause__.status, exc.__cause__.code, exc.__cause__.message)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _error(exc.status_code, code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return _error(500, "internal_error", "the gateway failed; the request was not accepted")

    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)

    # -------------------------------------------------------------- dependencies

    async def caller(authorization: Annotated[str | None, Header()] = None) -> Caller:
        # Async, and no database read for a key seen in the last seconds: the hot path of
        # every request stays on the event loop instead of hopping to a worker thread.
        key = authorization[7:].strip() if authorization and authorization.lower().startswith("bearer ") else None
        who = service.cached_caller(runtime, key)
        if who is None:
            who = await run_in_threadpool(service.authenticate_and_remember, runtime, key)
        if not limiter.allow(who.key_id):
            raise RateLimited("too many requests for this API key; slow down")
        return who

    def role(*roles: str) -> Callable[..., Awaitable[Caller]]:
        # Reads the header itself rather than depending on `caller`: each level of FastAPI's
        # dependency solving costs the busiest endpoint noticeable time per request.
        async def check(authorization: Annotated[str | None, Header()] = None) -> Caller:
            who = await caller(authorization)
            if who.role not in roles:
                raise Forbidden(f"this needs a {' or '.join(roles)} key, not {who.role}", code="wrong_role")
            return who

        return check

    AnyCaller = Annotated[Caller, Depends(caller)]
    Admin = Annotated[Caller, Depends(role("admin"))]
    PartnerCaller = Annotated[Caller, Depends(role("partner"))]
    Auditor = Annotated[Caller, Depends(role("auditor", "admin"))]
    audit_jobs.install(app, runtime, role("auditor", "admin"))  # POST/GET /v1/audit/verify
    IdemKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=255)]

    def scope(who: Caller) -> str:
        return f"partner:{who.partner_id}" if who.partner_id is not None else f"key:{who.key_id}"

    def reply(response: service.Response) -> JSONResponse:
        return JSONResponse(response.body, status_code=response.status)

    # -------------------------------------------------------------- admin

    @app.post("/v1/partners", status_code=201, tags=["admin"])
    def create_partner(body: PartnerCreate, who: Admin, idempotency_key: IdemKey = None) -> JSONResponse:
        """Onboards a partner on-chain. Without signer_address the gateway keeps its key (managed)."""
        return reply(
            service.idempotent(
                runtime,
                scope=scope(who),
                key=idempotency_key,
                body=body.model_dump(),
                effect=lambda s: service.create_partner(
                    runtime,
                    s,
                    name=body.name,
                    currency=body.currency,
                    rate_points=body.earn_rate.points,
                    rate_per_minor_units=body.earn_rate.per_minor_units,
                    allowance=body.allowance,
                    signer_address=body.signer_address,
                ),
            )
        )

    @app.post("/v1/api-keys", status_code=201, tags=["admin"])
    def create_api_key(body: ApiKeyCreate, who: Admin, idempotency_key: IdemKey = None) -> JSONResponse:
        def effect(session: Any) -> service.Response:
            row, key = service.create_api_key(session, role=body.role, partner_id=body.partner_id)
            return service.Response(
                201, {"key_id": row.id, "api_key": key, "role": row.role, "partner_id": row.partner_id}
            )

        return reply(
            service.idempotent(runtime, scope=scope(who), key=idempotency_key, body=body.model_dump(), effect=effect)
        )

    @app.delete("/v1/api-keys/{key_id}", status_code=204, tags=["admin"])
    def revoke_api_key(key_id: str, who: Admin) -> Response:
        with runtime.writes.begin() as session:
            service.revoke_api_key(session, key_id=key_id)
        runtime.forget_callers()  # other processes forget it within CALLER_TTL_SECONDS
        return Response(status_code=204)

    @app.post("/v1/members/{member_id}/unlock", tags=["admin"])
    def unlock(member_id: str, who: Admin) -> dict[str, Any]:
        with runtime.writes.begin() as session:
            service.unlock_member(session, member_id=member_id)
        return {"member_id": member_id, "locked": False}

    # -------------------------------------------------------------- members

    @app.post("/v1/members", status_code=201, tags=["members"])
    def create_member(body: MemberCreate, who: PartnerCaller, idempotency_key: IdemKey = None) -> JSONResponse:
        return reply(
            service.idempotent(
                runtime,
                scope=scope(who),
                key=idempotency_key,
                body=body.model_dump(),
                effect=lambda s: service.create_member(
                    runtime, s, caller=who, member_id=body.member_id, address=body.address, pin=body.pin
                ),
            )
        )

    @app.get("/v1/members/{member_id}", tags=["members"])
    def get_member(member_id: str, who: AnyCaller) -> dict[str, Any]:
        """Balance, tier and expiry schedule, read from the chain at the stated block."""
        with runtime.sessions() as session:
            return service.member_view(runtime, session, member_id=member_id)

    @app.get("/v1/members/{member_id}/activity", tags=["members"])
    def activity(
        member_id: str,
        who: AnyCaller,
        cursor: Annotated[int | None, Query(ge=1)] = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
    ) -> dict[str, Any]:
        with runtime.sessions() as session:
            return service.member_activity(session, caller=who, member_id=member_id, cursor=cursor, limit=limit)

    # -------------------------------------------------------------- operations

    def signed(value: Signed | None) -> SignedFields | None:
        return SignedFields(value.signature, value.nonce, value.deadline) if value else None

    @app.post("/v1/earn", status_code=202, tags=["operations"])
    async def earn(body: EarnCreate, who: PartnerCaller, idempotency_key: IdemKey = None) -> JSONResponse:
        """Accepts a purchase durably; the points reach the chain in the next batch."""
        # The hot path of the network: on the event loop, from caches, waiting for the group
        # commit without a thread. Only a cache miss (a new member, a stale tier, a used-up
        # nonce block) goes to a worker thread, where the database or the chain is read.
        self_signed = body.partner_signature is not None
        prepared = service.prepare_earn_cached(runtime, caller=who, member_id=body.member_id, self_signed=self_signed)
        if prepared is None:
            prepared = await run_in_threadpool(
                service.prepare_earn, runtime, caller=who, member_id=body.member_id, self_signed=self_signed
            )
        response = await service.idempotent_async(
            runtime,
            scope=scope(who),
            key=idempotency_key,
            body=body.model_dump(),
            effect=lambda s: service.accept_earn(
                runtime,
                s,
                caller=who,
                member_id=body.member_id,
                receipt_id=body.receipt_id,
                amount_minor=body.amount_minor,
                currency=body.currency,
                issued_at=body.issued_at,
                partner_signature=signed(body.partner_signature),
                prepared=prepared,
            ),
            refuses_before_writing=True,
        )
        metrics.add("operations_accepted_total")
        return reply(response)

    @app.post("/v1/redemptions", status_code=202, tags=["operations"])
    def redeem(body: RedemptionCreate, who: PartnerCaller, idempotency_key: IdemKey = None) -> JSONResponse:
        auth = body.authorization
        pin = auth.pin if isinstance(auth, PinAuthorization) else None
        try:
            prepared = service.prepare_redemption(runtime, member_id=body.member_id, pin=pin)
            response = service.idempotent(
                runtime,
                scope=scope(who),
                key=idempotency_key,
                body=body.model_dump(),
                effect=lambda s: service.accept_redemption(
                    runtime,
                    s,
                    caller=who,
                    member_id=body.member_id,
                    receipt_id=body.receipt_id,
                    points=body.points,
                    pin=pin,
                    member_signature=signed(auth) if isinstance(auth, Signed) else None,
                    issued_at=body.issued_at,
                    prepared=prepared,
                ),
            )
        except service.WrongPin as exc:
            service.record_wrong_pin(runtime, exc.member_id)
            raise
        metrics.add("operations_accepted_total")
        return reply(response)

    @app.post("/v1/reversals", status_code=202, tags=["operations"])
    def reverse(body: ReversalCreate, who: PartnerCaller, idempotency_key: IdemKey = None) -> JSONResponse:
        response = service.idempotent(
            runtime,
            scope=scope(who),
            key=idempotency_key,
            body=body.model_dump(),
            effect=lambda s: service.accept_reversal(
                runtime,
                s,
                caller=who,
                receipt_id=body.receipt_id,
                refund_id=body.refund_id,
                points=body.points,
                amount_minor=body.amount_minor,
                reason=body.reason,
                partner_signature=signed(body.partner_signature),
                issued_at=body.issued_at,
            ),
        )
        metrics.add("operations_accepted_total")
        return reply(response)

    @app.get("/v1/operations/{operation_id}", tags=["operations"])
    def get_operation(operation_id: str, who: AnyCaller) -> dict[str, Any]:
        with runtime.sessions() as session:
            return service.get_operation(session, caller=who, operation_id=operation_id)

    # -------------------------------------------------------------- ledger, health, metrics

    @app.get("/v1/ledger", tags=["audit"])
    def ledger_info() -> dict[str, Any]:
        """Where auditors look: chain id, contract address, deployment block, ABI."""
        return {
            "chain_id": runtime.ledger.chain_id,
            "address": runtime.ledger.address,
            "deployment_block": runtime.ledger.deployment_block,
            "abi": artifact()["abi"],
            "compiler": artifact()["compiler"]["version"],
        }

    @app.get("/v1/audit/receipts/{partner_id}/{receipt_id:path}", tags=["audit"])
    def receipt_proof(partner_id: int, receipt_id: str, who: Auditor, kind: str | None = None) -> dict[str, Any]:
        """The stored receipt, its keccak-256 recomputed, and the on-chain event carrying it."""
        from gateway.audit.receipts import stored_receipt_proof

        with runtime.sessions() as session:
            return stored_receipt_proof(
                runtime.chain.w3, runtime.ledger, session, partner_id=partner_id, receipt_id=receipt_id, kind=kind
            )

    @app.get("/v1/audit/settlement", tags=["audit"])
    def settlement_statement(
        who: Auditor,
        period_from: Annotated[date, Query(alias="from")],
        period_to: Annotated[date, Query(alias="to")],
    ) -> dict[str, Any]:
        """SPEC section 5's statement for [from, to), computed from chain events alone."""
        from gateway.audit.settlement import settlement

        start = int(datetime(period_from.year, period_from.month, period_from.day, tzinfo=UTC).timestamp())
        end = int(datetime(period_to.year, period_to.month, period_to.day, tzinfo=UTC).timestamp())
        if end <= start:
            raise Invalid("the period must end after it starts", code="validation_error")
        statement = settlement(
            runtime.chain.w3,
            runtime.ledger,
            period_from=start,
            period_to=end,
            from_block=runtime.ledger.deployment_block,
        )
        return statement.as_json()

    @app.get("/healthz", tags=["operations"])
    def healthz() -> JSONResponse:
        checks: dict[str, Any] = {}
        try:
            checks["chain_block"] = runtime.chain.w3.eth.block_number
        except Exception as exc:  # noqa: BLE001 - health reports any failure
            checks["chain_error"] = str(exc)
        try:
            with runtime.sessions() as session:
                session.execute(text("SELECT 1"))
            checks["database"] = "ok"
        except Exception as exc:  # noqa: BLE001
            checks["database_error"] = str(exc)
        healthy = "chain_block" in checks and checks.get("database") == "ok"
        checks["submitter_leader"] = submitter.is_leader  # this process submits
        try:
            checks["submitter_running"] = submitter.someone_leads()  # some process does
        except Exception as exc:  # noqa: BLE001 - health reports any failure
            checks["submitter_error"] = str(exc)
        checks["process"] = os.getpid()  # which gateway process answered (with --workers)
        return JSONResponse(
            {"status": "ok" if healthy else "unavailable", **checks}, status_code=200 if healthy else 503
        )

    @app.get("/metrics", tags=["operations"])
    def prometheus() -> PlainTextResponse:
        with runtime.sessions() as session:
            depth = queue_depth(session)
            rows = session.execute(select(Operation.status, func.count()).group_by(Operation.status)).all()
            by_status: dict[str, int] = {status: int(n) for status, n in rows}
            # From the batches themselves: right whichever process submitted them.
            batch_count, batch_sum = session.execute(select(func.count(), func.coalesce(func.sum(Batch.size), 0))).one()
        lines = []
        for name in ("operations_accepted_total", "operations_confirmed_total", "operations_rejected_total"):
            lines += [f"# TYPE loyalty_{name} counter", f"loyalty_{name} {metrics.counters[name]}"]
        lines += ["# TYPE loyalty_queue_depth gauge", f"loyalty_queue_depth {depth}"]
        lines += ["# TYPE loyalty_operations gauge"]
        lines += [f'loyalty_operations{{status="{s}"}} {n}' for s, n in sorted(by_status.items())]
        with metrics.lock:
            observed, sums = dict(metrics.observed), dict(metrics.sums)
        lines += [
            "# TYPE loyalty_batch_size summary",
            f"loyalty_batch_size_count {int(batch_count)}",
            f"loyalty_batch_size_sum {int(batch_sum)}",
        ]
        lines += [
            "# TYPE loyalty_submit_to_confirm_seconds summary",
            f"loyalty_submit_to_confirm_seconds_count {observed.get('submit_to_confirm_seconds', 0)}",
            f"loyalty_submit_to_confirm_seconds_sum {sums.get('submit_to_confirm_seconds', 0.0):.6f}",
        ]
        return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")

    @app.get("/v1/api-keys/self", tags=["admin"], include_in_schema=False)
    def whoami(who: AnyCaller) -> dict[str, Any]:
        with runtime.sessions() as session:
            row = session.get(ApiKey, who.key_id)
        return {
            "key_id": who.key_id,
            "role": who.role,
            "partner_id": who.partner_id,
            "created_at": row.created_at.isoformat() if row else None,
        }

    # The member and auditor pages (HTML, gateway/web), after the API: routes are tried in
    # order, and the API's requests are the many.
    app.include_router(pages)
    return app
