"""Idempotency-Key records: a write and the response it is owed, stored in one transaction."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gateway.app.runtime import Runtime
from gateway.core.errors import Conflict, ErrorCode, Invalid
from gateway.db.models import Base, utcnow
from gateway.db.writer import deferred


@dataclass(frozen=True)
class Response:
    status: int
    body: dict[str, Any]


def request_hash(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def idempotent(
    runtime: Runtime, *, scope: str, key: str | None, body: dict[str, Any], effect: Callable[[Session], Response]
) -> Response:
    """Runs `effect` and stores its response under (scope, key) in the same transaction.

    Same key, same body: the stored response. Same key, other body: idempotency_mismatch.
    Two concurrent first requests: the unique constraints (receipt, idempotency key) let one
    commit; the other rolls back and returns the winner's response.
    """
    digest = request_hash(body)
    try:
        result: Response = runtime.writer.run(_idempotent_work(scope, key, digest, effect))
    except (IntegrityError, Conflict) as exc:
        return _race_winner(runtime, scope, key, digest, exc)
    runtime.work_ready.set()
    return result


async def idempotent_async(
    runtime: Runtime,
    *,
    scope: str,
    key: str | None,
    body: dict[str, Any],
    effect: Callable[[Session], Response],
    refuses_before_writing: bool = False,
) -> Response:
    """`idempotent` for an event loop: waits for the group commit without holding a thread.

    `refuses_before_writing`: `effect` raises its domain errors before its first write (see
    WriteQueue), as `accept_earn` does."""
    digest = request_hash(body)
    try:
        work = _idempotent_work(scope, key, digest, effect)
        future = runtime.writer.submit(work, refuses_before_writing=refuses_before_writing)
        result: Response = await asyncio.wrap_future(future)
    except (IntegrityError, Conflict) as exc:
        return _race_winner(runtime, scope, key, digest, exc)
    runtime.work_ready.set()
    return result


def _idempotent_work(
    scope: str, key: str | None, digest: str, effect: Callable[[Session], Response]
) -> Callable[[Session], Response]:
    def work(session: Session) -> Response:
        group = deferred(session)
        # A retry: the first answer, looked up inside the write transaction. In a group of
        # bare jobs not looked up: a used key fails the group's insert and the careful re-run
        # of the group finds it here.
        if key is not None and group is None:
            stored = _stored(session, scope, key, digest)
            if stored is not None:
                return stored
        response = effect(session)
        if key is not None:
            row = {
                "scope": scope,
                "key": key,
                "request_hash": digest,
                "status_code": response.status,
                "response_body": json.dumps(response.body),
                "created_at": utcnow(),
            }
            if group is not None:
                group.add(_insert_idempotency, row)
            else:  # a lost race on the key fails here, inside this write's savepoint
                session.connection().execute(_INSERT_IDEMPOTENCY, row)
        return response

    return work


def _race_winner(runtime: Runtime, scope: str, key: str | None, digest: str, error: Exception) -> Response:
    """After a refused write: a concurrent request with the same key (another process, on
    PostgreSQL) may have committed first; its response is the answer. Else the error stands."""
    if key is not None:
        with runtime.sessions() as session:
            stored = _stored(session, scope, key, digest)
        if stored is not None:
            return stored
    raise error


def _stored(session: Session, scope: str, key: str, digest: str) -> Response | None:
    row = session.connection().execute(_STORED_RESPONSE, {"scope": scope, "key": key}).first()
    if row is None:
        return None
    if row.request_hash != digest:
        raise Invalid(
            "this Idempotency-Key was used with a different request body", code=ErrorCode.IDEMPOTENCY_MISMATCH
        )
    return Response(row.status_code, json.loads(row.response_body))


def _insert_idempotency(session: Session, rows: list[dict[str, Any]]) -> None:
    session.connection().execute(_INSERT_IDEMPOTENCY, rows)


_IDEMPOTENCY = Base.metadata.tables["idempotency_keys"]


_INSERT_IDEMPOTENCY = insert(_IDEMPOTENCY)


_STORED_RESPONSE = select(_IDEMPOTENCY.c.request_hash, _IDEMPOTENCY.c.status_code, _IDEMPOTENCY.c.response_body).where(
    _IDEMPOTENCY.c.scope == bindparam("scope"), _IDEMPOTENCY.c.key == bindparam("key")
)


def stored_response(runtime: Runtime, *, scope: str, key: str | None, body: dict[str, Any]) -> Response | None:
    """The answer already stored for this key (read before costly preparation, e.g. a batch's
    signatures); None when the key is new. The write transaction looks again (`idempotent`)."""
    if key is None:
        return None
    with runtime.sessions() as session:
        return _stored(session, scope, key, request_hash(body))
