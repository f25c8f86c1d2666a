"""Subscriptions and the event outbox: register, list, remove; raise an event; retry by hand.

`publish` runs inside the caller's transaction (the one that commits the change it reports),
so an event exists exactly when its cause does. Who receives what: a partner's subscriptions
get the events about that partner's own operations and its own members' notices, plus the
coalition-wide ones (`programme.*`); the operator's subscriptions get everything.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gateway.core.errors import Conflict, ErrorCode, Invalid, NotFound
from gateway.core.security import decrypt_private_key, encrypt_private_key, new_private_key
from gateway.db.models import utcnow
from gateway.webhooks.models import Attempt, Delivery, Webhook, WebhookEvent
from gateway.webhooks.signing import SECRET_PREFIX
from gateway.webhooks.urls import resolve

EVENT_TYPES = (
    "operation.confirmed",
    "operation.rejected",
    "member.tier_changed",
    "member.points_expiring",
    "member.inactive",
    "member.debt_recorded",
    "partner.allowance_low",
    "programme.change_scheduled",
)
MAX_WEBHOOKS_PER_OWNER = 20


@dataclass(frozen=True)
class Subscription:
    webhook_id: str
    partner_id: int | None
    url: str
    events: list[str]
    active: bool
    created_at: datetime

    def as_json(self) -> dict[str, Any]:
        return {
            "webhook_id": self.webhook_id,
            "partner_id": self.partner_id,
            "url": self.url,
            "events": self.events,
            "active": self.active,
            "created_at": self.created_at.isoformat(),
        }


def _subscription(row: Webhook) -> Subscription:
    return Subscription(row.id, row.partner_id, row.url, json.loads(row.events), row.active, row.created_at)


def _check_events(events: Any) -> list[str]:
    if not isinstance(events, list) or not events or not all(isinstance(e, str) for e in events):
        raise Invalid("events must be a non-empty list of event types", code=ErrorCode.INVALID_WEBHOOK_EVENTS)
    unknown = sorted(set(events) - set(EVENT_TYPES) - {"*"})
    if unknown:
        raise Invalid(
            f"unknown event types: {', '.join(unknown)}",
            code=ErrorCode.INVALID_WEBHOOK_EVENTS,
            known=list(EVENT_TYPES),
        )
    return sorted(set(events))


def create_webhook(
    session: Session, *, partner_id: int | None, url: str, events: Any, kek: str, production: bool
) -> tuple[Subscription, str]:
    """Registers a subscription; returns it and its secret (shown once, stored encrypted)."""
    kinds = _check_events(events)
    resolve(url, production=production)
    owned = session.scalars(
        select(Webhook.id).where(
            Webhook.active, Webhook.partner_id.is_(None) if partner_id is None else Webhook.partner_id == partner_id
        )
    ).all()
    if len(owned) >= MAX_WEBHOOKS_PER_OWNER:
        raise Conflict(f"at most {MAX_WEBHOOKS_PER_OWNER} webhooks per owner", code=ErrorCode.TOO_MANY_WEBHOOKS)
    material = new_private_key()
    row = Webhook(
        id="wh_" + secrets.token_hex(12),
        partner_id=partner_id,
        url=url,
        events=json.dumps(kinds),
        encrypted_secret=encrypt_private_key(material, kek),
        active=True,
        created_at=utcnow(),
    )
    session.add(row)
    session.flush()
    return _subscription(row), SECRET_PREFIX + material[2:]


def secret_of(row: Webhook, kek: str) -> str:
    return SECRET_PREFIX + decrypt_private_key(row.encrypted_secret, kek)[2:]


def _owned(session: Session, webhook_id: str, partner_id: int | None) -> Webhook:
    """The webhook if the caller may see it: a partner its own, the operator (None) any."""
    row = session.get(Webhook, webhook_id)
    if row is None or not row.active or (partner_id is not None and row.partner_id != partner_id):
        raise NotFound(f"no webhook {webhook_id}", code=ErrorCode.UNKNOWN_WEBHOOK)
    return row


def list_webhooks(session: Session, *, partner_id: int | None) -> list[Subscription]:
    query = select(Webhook).where(Webhook.active).order_by(Webhook.created_at)
    if partner_id is not None:
        query = query.where(Webhook.partner_id == partner_id)
    return [_subscription(r) for r in session.scalars(query)]


def delete_webhook(session: Session, webhook_id: str, *, partner_id: int | None) -> None:
    """Stops deliveries to it; its log stays."""
    row = _owned(session, webhook_id, partner_id)
    row.active = False
    session.execute(
        update(Delivery)
        .where(Delivery.webhook_id == row.id, Delivery.status == "pending")
        .values(status="cancelled", lease_owner=None, lease_until=None)
    )


def publish(
    session: Session, *, type: str, data: dict[str, Any], partner_id: int | None, dedupe_key: str
) -> str | None:
    """Raises an event in the caller's transaction; returns its id, or None when an event
    with the same `dedupe_key` was raised before (a repeated scheduler run, a replayed
    confirmation)."""
    if type not in EVENT_TYPES:
        raise ValueError(f"unknown webhook event type {type!r}")
    if session.scalar(select(WebhookEvent.id).where(WebhookEvent.dedupe_key == dedupe_key)) is not None:
        return None
    event = WebhookEvent(
        id="evt_" + secrets.token_hex(16),
        type=type,
        partner_id=partner_id,
        dedupe_key=dedupe_key,
        data=json.dumps(data, sort_keys=True, separators=(",", ":")),
        created_at=utcnow(),
    )
    try:
        with session.begin_nested():
            session.add(event)
            session.flush()
    except IntegrityError:  # raised concurrently by another process: theirs stands
        return None
    audience: list[ColumnElement[bool]] = [Webhook.partner_id.is_(None)]
    if partner_id is not None:
        audience.append(Webhook.partner_id == partner_id)
    elif type.startswith("programme."):
        audience.append(Webhook.partner_id.is_not(None))
    now = utcnow()
    for hook in session.scalars(select(Webhook).where(Webhook.active, or_(*audience))):
        kinds = json.loads(hook.events)
        if type in kinds or "*" in kinds:
            session.add(
                Delivery(
                    webhook_id=hook.id,
                    event_id=event.id,
                    status="pending",
                    attempts=0,
                    next_attempt_at=now,
                    created_at=now,
                )
            )
    return event.id


def publish_many(session: Session, events: list[tuple[str, dict[str, Any], int | None, str]]) -> int:
    """`publish` for many events at once (type, data, partner id, dedupe key): one look-up of
    the keys already raised, one of the subscriptions, then the inserts. Returns how many
    events were new."""
    if not events:
        return 0
    keys = [key for _, _, _, key in events]
    seen: set[str] = set()
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        seen.update(session.scalars(select(WebhookEvent.dedupe_key).where(WebhookEvent.dedupe_key.in_(chunk))))
    hooks = [
        (h.id, h.partner_id, set(json.loads(h.events))) for h in session.scalars(select(Webhook).where(Webhook.active))
    ]
    now = utcnow()
    rows: list[WebhookEvent] = []
    for kind, data, partner_id, key in events:
        if key in seen:
            continue
        seen.add(key)
        payload = json.dumps(data, sort_keys=True, separators=(",", ":"))
        event_id = "evt_" + secrets.token_hex(16)
        rows.append(
            WebhookEvent(id=event_id, type=kind, partner_id=partner_id, dedupe_key=key, data=payload, created_at=now)
        )
    session.add_all(rows)
    session.flush()  # the events first: deliveries refer to them (no ORM relationship orders it)
    for event in rows:
        for hook_id, owner, kinds in hooks:
            if (owner is None or owner == event.partner_id) and (event.type in kinds or "*" in kinds):
                session.add(
                    Delivery(
                        webhook_id=hook_id,
                        event_id=event.id,
                        status="pending",
                        attempts=0,
                        next_attempt_at=now,
                        created_at=now,
                    )
                )
    session.flush()
    return len(rows)


def deliveries(session: Session, webhook_id: str, *, partner_id: int | None, limit: int = 100) -> list[dict[str, Any]]:
    """The delivery log of one webhook, newest first, each with its attempts."""
    hook = _owned(session, webhook_id, partner_id)
    rows = session.execute(
        select(Delivery, WebhookEvent.type)
        .join(WebhookEvent, WebhookEvent.id == Delivery.event_id)
        .where(Delivery.webhook_id == hook.id)
        .order_by(Delivery.id.desc())
        .limit(limit)
    ).all()
    out = []
    for d, kind in rows:
        attempts = session.scalars(select(Attempt).where(Attempt.delivery_id == d.id).order_by(Attempt.id)).all()
        out.append(
            {
                "delivery_id": d.id,
                "event_id": d.event_id,
                "type": kind,
                "status": d.status,
                "attempts": d.attempts,
                "next_attempt_at": d.next_attempt_at.isoformat() if d.status == "pending" else None,
                "last_status_code": d.last_status_code,
                "last_error": d.last_error,
                "delivered_at": d.delivered_at.isoformat() if d.delivered_at else None,
                "log": [
                    {
                        "at": a.at.isoformat(),
                        "status_code": a.status_code,
                        "error": a.error,
                        "duration_ms": a.duration_ms,
                        "succeeded": a.succeeded,
                    }
                    for a in attempts
                ],
            }
        )
    return out


def retry(session: Session, webhook_id: str, delivery_id: int, *, partner_id: int | None) -> None:
    """Sends a delivery again now: a failed one (given up), or a pending one sooner."""
    hook = _owned(session, webhook_id, partner_id)
    row = session.get(Delivery, delivery_id)
    if row is None or row.webhook_id != hook.id:
        raise NotFound(f"no delivery {delivery_id} for webhook {webhook_id}", code=ErrorCode.UNKNOWN_DELIVERY)
    if row.status == "succeeded":
        raise Conflict("this delivery already succeeded; the receiver has the event", code=ErrorCode.ALREADY_DELIVERED)
    row.status, row.next_attempt_at, row.lease_owner, row.lease_until = "pending", utcnow(), None, None
    row.created_at = utcnow()  # a manual retry starts a new 24-hour retry window
