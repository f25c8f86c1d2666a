"""The member and auditor pages: an APIRouter of plain HTML (Jinja2, autoescaped, no script).

Errors on these routes become HTML pages with the fitting status, here, not the API's JSON:
a person reads them. The pages are public and read-only; docs/pages.md says why that is safe
(they show what the chain shows to anyone, plus partner names) and what is kept off them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs

import segno
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from gateway.api.errors import http_status
from gateway.app.runtime import Runtime
from gateway.audit.report import History, render_chart
from gateway.core.errors import LoyaltyError, RateLimited, TooLarge
from gateway.core.money import money
from gateway.core.ratelimit import TokenBuckets
from gateway.points.rules import month_label
from gateway.web import member_reads, reads
from gateway.web.reads import BadInput

log = logging.getLogger("gateway.web")
HERE = Path(__file__).parent
MAX_FORM_BYTES = 64 * 1024  # the receipt (16 KiB) percent-encoded, with room to spare

# Pages carry no script and load nothing from elsewhere; member ids in URLs go nowhere else.
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def percent(rate: float | None) -> str:
    return "-" if rate is None else f"{100 * rate:.1f}%"


def when(moment: datetime | int) -> str:
    if isinstance(moment, int):
        moment = datetime.fromtimestamp(moment, tz=UTC)
    if moment.tzinfo is None:  # SQLite gives back naive datetimes; they were written in UTC
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def card_svg(member_id: str) -> Markup:
    """The member's digital card: a QR code of the member id, drawn here as inline SVG (no
    script, nothing loaded), for a till's scanner to read instead of a plastic card. It holds
    the id alone: a till looks the member up through the API as it would a typed id."""
    code = segno.make_qr(member_id, error="m")  # medium correction: survives a scratched phone screen
    svg = code.svg_inline(scale=5, border=4, dark="#000", light="#fff", title=f"Card of member {member_id}")
    return Markup(svg)  # noqa: S704 -- segno writes only paths and the escaped title


def countdown(seconds: int) -> str:
    if seconds <= 0:
        return "due now"
    if seconds < 86_400:
        return f"in {-(-seconds // 3600)} h"  # rounded up: never "in 0 h" while it is still ahead
    days = -(-seconds // 86_400)
    return f"in {days} days"


def day(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, tz=UTC).strftime("%Y-%m-%d")


templates = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=True,  # every value is escaped, whatever its source
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
templates.filters.update(
    points=lambda n: f"{n:,}",
    money=money,
    percent=percent,
    month=reads.month_name,
    month_label=month_label,
    when=when,
    day=day,
    countdown=countdown,
)


# Page views are cheap, but not free, and member lookups should not be a way to walk through
# every card number: a token bucket per client address.
ClientLimiter = TokenBuckets


page_views = ClientLimiter(rate=5, burst=60)
member_lookups = ClientLimiter(rate=1, burst=20)


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def page(request: Request, template: str, http_status: int = 200, **context: Any) -> HTMLResponse:
    runtime: Runtime = request.app.state.runtime
    html = templates.get_template(template).render(
        ledger=runtime.ledger.address, chain_id=runtime.ledger.chain_id, path=request.url.path, **context
    )
    return HTMLResponse(html, status_code=http_status, headers=HEADERS)


TITLES = {400: "That did not look right", 404: "Not found", 413: "Too large", 429: "Slow down", 503: "Unavailable"}


def error_page(request: Request, status: int, message: str) -> HTMLResponse:
    return page(request, "error.html", status, status=status, title=TITLES.get(status, "Error"), message=message)


class PageRoute(APIRoute):
    """Routes of this router answer every failure with an HTML page, not the API's JSON."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                if not page_views.allow(_client(request)):
                    raise RateLimited("Too many pages from your address in a short time; wait a few seconds.")
                return await handler(request)
            except LoyaltyError as exc:
                return error_page(request, http_status(exc), exc.message)
            except Exception:
                log.exception("page failed: %s", request.url.path)
                return error_page(request, 500, "Something went wrong on our side; nothing was changed.")

        return route


router = APIRouter(route_class=PageRoute, include_in_schema=False)
_cache_lock = threading.Lock()


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _history(request: Request) -> History:
    """The ledger's events, kept per app (so per runtime) and brought up to date."""
    with _cache_lock:
        cache = getattr(request.app.state, "page_history", None)
        if cache is None:
            cache = request.app.state.page_history = reads.HistoryCache()
    return cache.get(_runtime(request))


RuntimeDep = Annotated[Runtime, Depends(_runtime)]


def _param(request: Request, name: str) -> str | None:
    values = request.query_params.getlist(name)
    if len(values) > 1:
        raise BadInput(f"Give {name} once.")
    return values[0] if values else None


# ------------------------------------------------------------------ members


@router.get("/members")
def member_search(request: Request) -> HTMLResponse:
    return page(request, "member_search.html", query="")


@router.get("/members/view")
def member_view(request: Request, runtime: RuntimeDep) -> HTMLResponse:
    query = _param(request, "q") or ""
    if not member_lookups.allow(_client(request)):
        raise RateLimited("Too many member lookups from your address; wait a little.")
    with runtime.sessions() as session:
        member = member_reads.find_member(session, query, runtime)
        data = member_reads.member_page(runtime, session, member)
    return page(request, "member.html", m=data, query=query.strip(), card=card_svg(data.member_id))


@router.get("/proof/{tx_hash}/{log_index}")
def proof(request: Request, runtime: RuntimeDep, tx_hash: str, log_index: str) -> HTMLResponse:
    with runtime.sessions() as session:
        data = reads.proof(runtime, session, tx_hash=tx_hash, log_index=log_index, operation_id=_param(request, "op"))
    return page(request, "proof.html", p=data)


# ------------------------------------------------------------------ auditors


@router.get("/audit")
def audit(request: Request, runtime: RuntimeDep) -> HTMLResponse:
    chain = _history(request)
    start, end = reads.period(chain, _param(request, "from"), _param(request, "to"))
    with runtime.sessions() as session:
        data = reads.audit_page(runtime, session, chain, start, end)
    return page(request, "audit.html", a=data, form_from=day(start), form_to=day(end), pasted="")


@router.get("/audit/chart.png")
def chart(request: Request, runtime: RuntimeDep) -> Response:
    from gateway.audit.report import monthly, months_of_period

    chain = _history(request)
    start, end = reads.period(chain, _param(request, "from"), _param(request, "to"))
    first, last = months_of_period(start, end)
    source = (
        f"From chain events: contract {chain.address}, chain id {chain.chain_id}, "
        f"blocks {chain.from_block}..{chain.to_block}"
    )
    png = render_chart(monthly(chain, first_month=first, last_month=last), source=source)
    return Response(png, media_type="image/png", headers=HEADERS)


@router.get("/audit/metrics.png")
def metrics_chart(request: Request, runtime: RuntimeDep) -> Response:
    from gateway.audit.metrics import metrics_of, monthly_metrics
    from gateway.audit.metrics_charts import render_metrics_chart
    from gateway.audit.report import months_of_period

    chain = _history(request)
    start, end = reads.period(chain, _param(request, "from"), _param(request, "to"))
    first, last = months_of_period(start, end)
    rows = monthly_metrics(chain.events, chain.times, first_month=first, last_month=last)
    total = metrics_of(chain.events, chain.times, period_from=start, period_to=end)
    with runtime.sessions() as session:
        names = reads.partner_names(session)
    source = (
        f"From chain events: contract {chain.address}, chain id {chain.chain_id}, "
        f"blocks {chain.from_block}..{chain.to_block}"
    )
    png = render_metrics_chart(rows, total, names=names, source=source)
    return Response(png, media_type="image/png", headers=HEADERS)


async def _form(request: Request) -> dict[str, str]:
    """An application/x-www-form-urlencoded body, bounded (no multipart: our forms never send it)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise BadInput("Send the form from the page.")
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise TooLarge("That is far more than a receipt.")
    try:
        fields = parse_qs(body.decode("ascii"), keep_blank_values=True, max_num_fields=5, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise BadInput("The form could not be read.") from None
    return {k: v[0] for k, v in fields.items()}


@router.get("/audit/receipt")
def receipt_form(request: Request) -> Response:
    return RedirectResponse("/audit#receipt", status_code=303)


@router.post("/audit/receipt")
def receipt_check(
    request: Request, runtime: RuntimeDep, form: Annotated[dict[str, str], Depends(_form)]
) -> HTMLResponse:
    text = form.get("receipt", "")
    chain = _history(request)
    with runtime.sessions() as session:
        names = reads.partner_names(session)
    candidates = reads.check_receipt(chain, text, names)
    found = any(c.sightings for c in candidates)
    return page(request, "receipt_check.html", candidates=candidates, found=found, pasted=text, to_block=chain.to_block)


@router.get("/static/pages.css")
def stylesheet() -> Response:
    css = (HERE / "static" / "pages.css").read_text()
    return Response(css, media_type="text/css", headers={**HEADERS, "Cache-Control": "max-age=3600"})
