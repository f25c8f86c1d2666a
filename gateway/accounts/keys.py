"""API keys: issuing, revoking, and authenticating a request's key (with a short-lived cache)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.app.runtime import Runtime
from gateway.core.errors import Conflict, ErrorCode, Invalid, NotFound, Unauthorized
from gateway.core.security import (
    Caller,
    hash_api_key,
    new_api_key,
)
from gateway.db.models import ApiKey, Partner


def authenticate(session: Session, key: str | None) -> Caller:
    if not key:
        raise Unauthorized("an API key is required: Authorization: Bearer <key>", code=ErrorCode.MISSING_API_KEY)
    row = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_api_key(key)))
    if row is None or row.revoked_at is not None:
        raise Unauthorized("this API key is not valid", code=ErrorCode.INVALID_API_KEY)
    return Caller(row.id, row.role, row.partner_id)


def cached_caller(runtime: Runtime, key: str | None) -> Caller | None:
    """The caller of a key authenticated a moment ago (no database read), else None."""
    if not key:
        return None
    found = runtime.cached_caller(hash_api_key(key))
    return found if isinstance(found, Caller) else None


def authenticate_and_remember(runtime: Runtime, key: str | None) -> Caller:
    with runtime.sessions() as session:
        who = authenticate(session, key)
    assert key is not None
    runtime.remember_caller(hash_api_key(key), who)
    return who


def create_api_key(session: Session, *, role: str, partner_id: int | None) -> tuple[ApiKey, str]:
    if role == "partner":
        if partner_id is None:
            raise Invalid("a partner key names its partner: send partner_id", code=ErrorCode.VALIDATION_ERROR)
        if session.get(Partner, partner_id) is None:
            raise NotFound(f"no partner {partner_id}", code=ErrorCode.UNKNOWN_PARTNER)
    elif partner_id is not None:
        raise Invalid("only partner keys belong to a partner", code=ErrorCode.VALIDATION_ERROR)
    key_id, key, key_hash = new_api_key()
    row = ApiKey(id=key_id, key_hash=key_hash, role=role, partner_id=partner_id)
    session.add(row)
    return row, key


def revoke_api_key(session: Session, *, key_id: str) -> None:
    row = session.get(ApiKey, key_id)
    if row is None or row.revoked_at is not None:
        raise NotFound(f"no active API key {key_id}", code=ErrorCode.UNKNOWN_API_KEY)
    if row.role == "admin":
        # The active admin keys, locked: two admins revoking each other at once cannot both win.
        admins = session.scalars(
            select(ApiKey.id).where(ApiKey.role == "admin", ApiKey.revoked_at.is_(None)).with_for_update()
        ).all()
        if list(admins) == [key_id]:
            raise Conflict(
                "this is the last active admin key: create another admin key before revoking it",
                code=ErrorCode.LAST_ADMIN_KEY,
            )
    row.revoked_at = datetime.now(UTC)


def revoke(runtime: Runtime, *, key_id: str) -> None:
    """Revokes a key in its own transaction; this process forgets it at once, other gateway
    processes within their cache's CALLER_TTL_SECONDS."""
    with runtime.writes.begin() as session:
        revoke_api_key(session, key_id=key_id)
    runtime.forget_callers()


def created_at(session: Session, *, key_id: str) -> datetime | None:
    row = session.get(ApiKey, key_id)
    return row.created_at if row else None
