"""The operator's page (SPEC section 6, r2): partners, allowances running low and every scheduled
change with its countdown, read from the chain. Plain HTML like the member and auditor pages.

Unlike them it needs the admin role. A browser sends no Authorization header without script,
so the page asks for an admin API key once (a POST form, never in a URL) and keeps a signed
session cookie: the key's id and an expiry, HMAC-signed with a key derived from the gateway's
key-encryption key; HttpOnly, SameSite=Strict, Secure over https, limited to /operator. Each
view checks again that the key is an active admin key, so revoking it ends the session.
The page only reads; the changes themselves go through the API or `loyalty` (docs/operators.md).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from gateway.accounts import console
from gateway.accounts.keys import authenticate
from gateway.app.runtime import Runtime
from gateway.core.errors import LoyaltyError, RateLimited
from gateway.db.models import ApiKey
from gateway.web.pages import ClientLimiter, PageRoute, _client, _form, page

COOKIE = "loyalty_operator"
SESSION_SECONDS = 8 * 3600
logins = ClientLimiter(rate=0.5, burst=10)
router = APIRouter(route_class=PageRoute, include_in_schema=False)


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(_runtime)]


def _secret(runtime: Runtime) -> bytes:
    return hashlib.sha256(b"loyalty operator page session\x00" + runtime.kek.encode()).digest()


def _signed(runtime: Runtime, key_id: str, expires: int) -> str:
    mac = hmac.new(_secret(runtime), f"{key_id}.{expires}".encode(), hashlib.sha256).hexdigest()
    return f"{key_id}.{expires}.{mac}"


def _session(runtime: Runtime, request: Request) -> str | None:
    """The admin key id of a valid session cookie, else None."""
    value = request.cookies.get(COOKIE, "")
    parts = value.split(".")
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    key_id, expires = parts[0], int(parts[1])
    if not hmac.compare_digest(_signed(runtime, key_id, expires), value) or expires < time.time():
        return None
    with runtime.sessions() as session:
        row = session.get(ApiKey, key_id)
        return key_id if row is not None and row.revoked_at is None and row.role == "admin" else None


def _countdown(seconds: int | None) -> str:
    if seconds is None:
        return ""
    if seconds <= 0:
        return "due now"
    days, rest = divmod(seconds, 86_400)
    hours, minutes = rest // 3600, rest % 3600 // 60
    return f"in {days} d {hours} h" if days else f"in {hours} h {minutes} min"


def _sets(terms: dict[str, Any]) -> str:
    """What a change sets, in words: "from 0 points 1x; from 300 points 1.5x", "1/100"..."""
    if "tiers" in terms:
        return "; ".join(f"from {t['threshold']:,} points {t['multiplier_bps'] / 10_000:g}x" for t in terms["tiers"])
    if "earn_rate" in terms:
        return f"{terms['earn_rate']['points']} per {terms['earn_rate']['per_minor_units']} minor units"
    if "point_value" in terms:
        return f"{terms['point_value']['minor_units']} minor units of {terms['point_value']['currency']} per point"
    return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in sorted(terms.items()))


def operator_view(runtime: Runtime) -> dict[str, Any]:
    with runtime.sessions() as session:
        partners = console.partners(runtime, session)
    programme = console.programme(runtime)
    low = runtime.settings.gateway.notice_allowance_low_points
    changes = programme["changes"]
    pending = [
        dict(c, countdown=_countdown(c["seconds_left"]), sets=_sets(c["terms"]))
        for c in changes
        if c["state"] == "pending"
    ]
    return {
        "partners": partners["items"],
        "low": [p for p in partners["items"] if p["active"] and p["allowance_left"] < low],
        "threshold": low,
        "programme": programme,
        "pending": pending,
        "block": partners["block_number"],
    }


@router.get("/operator")
def operator_page(request: Request, runtime: RuntimeDep) -> HTMLResponse:
    if _session(runtime, request) is None:
        return page(request, "operator_login.html", 200, problem="")
    return page(request, "operator.html", o=operator_view(runtime))


@router.post("/operator/login")
def login(request: Request, runtime: RuntimeDep, form: Annotated[dict[str, str], Depends(_form)]) -> Response:
    if not logins.allow(_client(request)):
        raise RateLimited("Too many sign-in attempts from your address; wait a minute.")
    key = form.get("api_key", "").strip()
    try:
        with runtime.sessions() as session:
            who = authenticate(session, key)
    except LoyaltyError:
        return page(request, "operator_login.html", 401, problem="That is not a valid API key.")
    if who.role != "admin":
        return page(request, "operator_login.html", 403, problem="This page needs an admin key.")
    response = RedirectResponse("/operator", status_code=303)
    expires = int(time.time()) + SESSION_SECONDS
    response.set_cookie(COOKIE, _signed(runtime, who.key_id, expires), max_age=SESSION_SECONDS, path="/operator",
                        httponly=True, samesite="strict", secure=request.url.scheme == "https")  # fmt: skip
    return response


@router.post("/operator/logout")
def logout(request: Request) -> Response:
    response = RedirectResponse("/operator", status_code=303)
    response.delete_cookie(COOKIE, path="/operator")
    return response
