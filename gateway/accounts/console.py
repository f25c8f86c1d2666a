"""The operator console's reads (SPEC section 6, r2): the programme and every partner's terms
and totals, read from the chain itself (not from the gateway's copy), at one block."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.accounts.changes import describe, head
from gateway.app.runtime import Runtime
from gateway.core.errors import ErrorCode, NotFound
from gateway.db.models import Partner


def programme(runtime: Runtime) -> dict[str, Any]:
    """Tiers, expiry, point value, transfers, pause, notice period and every scheduled change
    (pending ones with the seconds left), as the chain has them."""
    ledger = runtime.ledger
    block, now = head(runtime)
    names = ["tiers", "expiryMonths", "pointValue", "transfersEnabled", "paused", "noticePeriod", "changeCount"]
    names.append("debtAllowed")  # (r2) the debt policy
    views = ledger.views([(n, ()) for n in names], block)
    tiers, expiry, (value, currency), transfers, paused, notice, count, debt_allowed = views
    changes = ledger.views([("changeOf", (i,)) for i in range(1, int(count) + 1)], block) if count else []
    tier_names = [t.name for t in runtime.settings.coalition.tiers]
    return {
        "block_number": block,
        "tiers": [
            {
                "index": i,
                "name": tier_names[i] if i < len(tier_names) else None,
                "threshold": int(threshold),
                "multiplier_bps": int(bps),
            }
            for i, (threshold, bps) in enumerate(tiers)
        ],
        "expiry_months": int(expiry),
        "point_value": {"minor_units": int(value), "currency": bytes(currency).decode()},
        "transfers_enabled": bool(transfers),
        "paused": bool(paused),
        "debt_allowed": bool(debt_allowed),
        "notice_period_seconds": int(notice),
        "changes": [describe(i, raw, now) for i, raw in enumerate(changes, start=1)],
    }


def _partner(pid: int, info: Any, prices: Any, name: str | None, now: int) -> dict[str, Any]:
    return {
        "partner_id": pid,
        "name": name,
        "signer_address": info[0],
        "active": bool(info[1]),
        "issues_from": int(info[9]),
        "issuing": bool(info[1]) and int(info[9]) <= now,
        "earn_rate": {"points": int(info[2]), "per_minor_units": int(info[3])},
        "currency": bytes(info[4]).decode(),
        "allowance_left": int(info[5]),
        "issued": int(info[6]),
        "awarded": int(info[10]),
        "reversed": int(info[7]),
        "redeemed": int(info[8]),
        "issue_price": int(prices[0]),
        "redemption_price": int(prices[1]),
    }


def partners(runtime: Runtime, session: Session) -> dict[str, Any]:
    """Every partner on the ledger (named where this gateway onboarded it)."""
    block, now = head(runtime)
    count = int(runtime.ledger.view("partnerCount", block=block))
    ids = list(range(1, count + 1))
    values = runtime.ledger.views(
        [("partner", (pid,)) for pid in ids] + [("partnerPrices", (pid,)) for pid in ids], block
    )
    names: dict[int, str] = {row.id: row.name for row in session.execute(select(Partner.id, Partner.name))}
    items = [_partner(pid, values[i], values[count + i], names.get(pid), now) for i, pid in enumerate(ids)]
    return {"block_number": block, "items": items}


def partner(runtime: Runtime, session: Session, partner_id: int) -> dict[str, Any]:
    block, now = head(runtime)
    info, prices = runtime.ledger.views([("partner", (partner_id,)), ("partnerPrices", (partner_id,))], block)
    if int(str(info[0]), 16) == 0:
        raise NotFound(f"no partner {partner_id} on the ledger", code=ErrorCode.UNKNOWN_PARTNER)
    name = session.scalar(select(Partner.name).where(Partner.id == partner_id))
    return {"block_number": block, **_partner(partner_id, info, prices, name, now)}
