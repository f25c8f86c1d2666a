"""The v1 HTTP API (SPEC section 6): the app factory. Routes live in gateway/api/routes by
area; dependencies in deps.py; domain errors become JSON in errors.py, and only there.

No `from __future__ import annotations` in the API's modules: FastAPI reads the annotations.
"""

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from gateway.accounts.changes import ChangeWatch
from gateway.api import errors
from gateway.api import watch as programme_watch
from gateway.api.coalesce import Coalesced
from gateway.api.middleware import MAX_BATCH_BODY_BYTES, MAX_BODY_BYTES, BodyLimit, RequestLog
from gateway.api.routes import (
    admin,
    audit,
    batches,
    campaigns,
    console,
    console_writes,
    health,
    members,
    operations,
    programme_metrics,
    programme_ops,
    reconciliation,
    webhooks,
)
from gateway.api.routes.health import Figures, HealthProbe
from gateway.app.runtime import Runtime
from gateway.audit.jobs import VerifyJobs
from gateway.core.metrics import Metrics
from gateway.core.ratelimit import TokenBuckets
from gateway.operations import misses
from gateway.submitter.loop import Submitter
from gateway.web.operator import router as operator_page
from gateway.web.pages import router as pages
from gateway.web.rpc import router as rpc
from gateway.webhooks.deliver import Deliverer
from gateway.webhooks.notices import NoticePolicy, scan


def _notices(runtime: Runtime, stop: threading.Event) -> None:
    """The periodic member and partner notices scan (webhooks), until `stop`."""
    g = runtime.settings.gateway
    policy = NoticePolicy(g.notice_expiring_days, g.notice_inactive_days, g.notice_allowance_low_points)
    while not stop.wait(g.notice_interval_seconds):
        try:
            scan(runtime.sessions, runtime.writes, runtime.ledger, now=runtime.chain.latest_timestamp(), policy=policy)
        except Exception:  # noqa: BLE001 - a chain or database hiccup: the next round tries again
            logging.getLogger("gateway.webhooks").exception("notice scan failed")


def create_app(runtime: Runtime, *, run_submitter: bool = True, rate_per_second: float | None = None) -> FastAPI:
    metrics = Metrics()
    submitter = Submitter(runtime, metrics)
    jobs = VerifyJobs(runtime)
    probe = HealthProbe(runtime, submitter)
    # Webhook deliveries: every gateway process sends, leases keep them from sending one twice.
    deliverer = Deliverer(
        runtime.writes,
        reads=runtime.sessions,
        kek=runtime.settings.key_encryption_key.get_secret_value(),
        production=runtime.settings.env == "production",
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        stop = threading.Event()
        thread = threading.Thread(target=submitter.run, args=(stop,), name="submitter", daemon=True)
        runtime.writer.start()
        if run_submitter:
            thread.start()
        sender = threading.Thread(target=deliverer.run, args=(stop,), name="webhooks", daemon=True)
        sender.start()
        notices = threading.Thread(target=_notices, args=(runtime, stop), name="notices", daemon=True)
        if runtime.settings.gateway.notice_interval_seconds > 0:
            notices.start()
        if runtime.settings.gateway.programme_watch_seconds > 0:
            args = (runtime, app.state.programme_watch, stop)
            threading.Thread(target=programme_watch.run, args=args, name="programme", daemon=True).start()
        probe.probe()  # /healthz answers from the first probe on
        threading.Thread(target=probe.run, args=(stop,), name="health", daemon=True).start()
        yield
        stop.set()
        if run_submitter:
            thread.join(timeout=10)
        sender.join(timeout=15)
        deliverer.close()
        runtime.writer.stop()
        jobs.stop()  # a running verification gives up between two pages of events

    # /docs with Swagger UI's files served by the gateway itself (fastapi-offline ships them):
    # it works without the internet. No /redoc.
    app = FastAPIOffline(
        docs_url="/docs",
        redoc_url=None,
        static_url="/docs/static",
        title="Coalition points gateway",
        version="1",
        lifespan=lifespan,
        description="Partners issue and redeem coalition points; every point is on-chain. "
        'Errors are JSON: {"error": {"code", "message"}}.',
    )
    app.state.runtime, app.state.submitter, app.state.metrics = runtime, submitter, metrics
    app.state.audit_jobs, app.state.health = jobs, probe
    app.state.figures = Figures(runtime)
    app.state.programme_watch = ChangeWatch(runtime)
    # An earn whose member or tier is not cached waits for one load with the other misses.
    app.state.earn_misses = Coalesced(partial(misses.prepare_earns, runtime))
    app.state.limiter = TokenBuckets(rate_per_second or runtime.settings.gateway.rate_limit_per_second)
    errors.install(app)
    app.add_middleware(
        BodyLimit,
        limit=MAX_BODY_BYTES,
        timeout=runtime.settings.gateway.body_timeout_seconds,
        paths={"/v1/batches": MAX_BATCH_BODY_BYTES},
    )
    app.add_middleware(RequestLog, observe=metrics.request)
    areas = (
        admin,
        console,
        console_writes,
        members,
        operations,
        programme_ops,
        campaigns,
        batches,
        audit,
        programme_metrics,
        reconciliation,
        webhooks,
    )
    for area in (*areas, health):
        app.include_router(area.router)
    # The member and auditor pages (HTML, gateway/web), after the API: routes are tried in
    # order, and the API's requests are the many.
    app.include_router(pages)
    app.include_router(operator_page)  # the operator's page: an admin key's signed session
    app.include_router(rpc)  # POST /rpc: the chain, read-only, for wallets and auditors
    return app
