"""The operator console's reads (SPEC section 6, r2): the programme and every partner's terms
and totals, read from the chain itself (not from the gateway's copy), at one block."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.app.runtime import Runtime
from gateway.chain.ledger import rpc
from gateway.core.errors import ErrorCode, NotFound
from gateway.db.models import Partner

CHANGE_KINDS = {1: "expiry", 2: "tiers", 3: "point_value", 4: "rate", 5: "signer", 6: "prices"}
CHANGE_STATES = {1: "pending", 2: "applied", 3: "cancelled"}


def _head(runtime: Runtime) -> tuple[int, int]:
    block = rpc(runtime.chain.w3, "eth_getBlockByNumber", ["latest", False])
    number, timestamp = block["number"], block["timestamp"]
    return (int(number, 16) if isinstance(number, str) else int(number)), (
        int(timestamp, 16) if isinstance(timestamp, str) else int(timestamp)
    )


def programme(runtime: Runtime) -> dict[str, Any]:
    """Tiers, expiry, point value, transfers, pause, notice period and every scheduled change
    (pending ones with the seconds left), as the chain has them."""
    ledger = runtime.ledger
    block, now = _head(runtime)
    names = ["tiers", "expiryMonths", "pointValue", "transfersEnabled", "paused", "noticePeriod", "changeCount"]
    tiers, expiry, (value, currency), transfers, paused, notice, count = ledger.views([(n, ()) for n in names], block)
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
        "notice_period_seconds": int(notice),
        "changes": [
            {
                "change_id": i,
                "kind": CHANGE_KINDS.get(int(kind), str(kind)),
                "partner_id": int(partner_id) or None,
                "state": CHANGE_STATES.get(int(state), "unknown"),
                "effective_at": int(effective_at),
                "seconds_left": max(0, int(effective_at) - now) if int(state) == 1 else None,
            }
            for i, (kind, state, partner_id, effective_at, _) in enumerate(changes, start=1)
        ],
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
    block, now = _head(runtime)
    count = int(runtime.ledger.view("partnerCount", block=block))
    ids = list(range(1, count + 1))
    values = runtime.ledger.views(
        [("partner", (pid,)) for pid in ids] + [("partnerPrices", (pid,)) for pid in ids], block
    )
    names: dict[int, str] = {row.id: row.name for row in session.execute(select(Partner.id, Partner.name))}
    items = [_partner(pid, values[i], values[count + i], names.get(pid), now) for i, pid in enumerate(ids)]
    return {"block_number": block, "items": items}


def partner(runtime: Runtime, session: Session, partner_id: int) -> dict[str, Any]:
    block, now = _head(runtime)
    info, prices = runtime.ledger.views([("partner", (partner_id,)), ("partnerPrices", (partner_id,))], block)
    if int(str(info[0]), 16) == 0:
        raise NotFound(f"no partner {partner_id} on the ledger", code=ErrorCode.UNKNOWN_PARTNER)
    name = session.scalar(select(Partner.name).where(Partner.id == partner_id))
    return {"block_number": block, **_partner(partner_id, info, prices, name, now)}
