"""Sends due deliveries: at least once, signed, with exponential backoff for over 24 hours.

Each round leases a few due deliveries (on PostgreSQL with `FOR UPDATE SKIP LOCKED`, so
several gateway processes share the work without ever sending one event at once; on SQLite
the writer's `BEGIN IMMEDIATE` serializes the claim), sends them outside any transaction,
then records the outcome and one log row per attempt. A sender killed between sending and
recording leaves a lease that runs out; the delivery is then sent again: receivers dedupe by
the event id, which is why the SPEC promises at-least-once and an id.
"""

from __future__ import annotations

import json
import logging
import random
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from sqlalchemy import or_, select
from sqlalchemy.orm import Session, sessionmaker

from gateway.db.models import utcnow
from gateway.webhooks.models import Attempt, Delivery, Webhook, WebhookEvent
from gateway.webhooks.signing import HEADER, signature
from gateway.webhooks.store import secret_of
from gateway.webhooks.urls import UnsafeUrl, resolve

log = logging.getLogger("gateway.webhooks")


@dataclass(frozen=True)
class Policy:
    """Retry timing. The defaults retry for 25 hours: 10 s, 20 s, 40 s... capped at an hour."""

    base_seconds: float = 10.0
    cap_seconds: float = 3600.0
    give_up_after: timedelta = timedelta(hours=25)
    lease_seconds: float = 60.0
    timeout_seconds: float = 10.0
    per_round: int = 20

    def delay(self, attempts: int) -> float:
        """Seconds before try number `attempts + 1`, with +-20% jitter so receivers coming
        back up are not hit by every gateway at once."""
        raw = min(self.cap_seconds, self.base_seconds * 2 ** max(0, attempts - 1))
        return raw * random.uniform(0.8, 1.2)


@dataclass(frozen=True)
class Job:
    delivery_id: int
    event_id: str
    url: str
    secret: str
    body: bytes


class Deliverer:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        kek: str,
        production: bool,
        policy: Policy | None = None,
        owner: str | None = None,
        reads: sessionmaker[Session] | None = None,
    ) -> None:
        self.sessions = sessions
        # Where to look for due work first, without a write transaction: on SQLite a claim takes
        # the database's write lock, which the gateway's earns should not queue behind each second.
        self.reads = reads or sessions
        self.kek = kek
        self.production = production
        self.policy = policy or Policy()
        self.owner = owner or f"deliverer-{secrets.token_hex(6)}"
        self._secrets: dict[str, str] = {}  # webhook id -> secret (decrypting costs ~10 ms)
        self._client = httpx.Client(timeout=self.policy.timeout_seconds, follow_redirects=False)

    def close(self) -> None:
        self._client.close()

    # ------------------------------------------------------------ one round

    def run_once(self, now: datetime | None = None) -> int:
        """Sends what is due; returns how many deliveries were tried."""
        jobs = self._claim(now or utcnow())
        for job in jobs:
            self._record(job, *self._send(job))
        return len(jobs)

    def _claim(self, now: datetime) -> list[Job]:
        with self.reads() as look:
            first = look.scalar(
                select(Delivery.id)
                .where(
                    Delivery.status == "pending",
                    Delivery.next_attempt_at <= now,
                    or_(Delivery.lease_until.is_(None), Delivery.lease_until < now),
                )
                .limit(1)
            )
        if first is None:
            return []
        with self.sessions.begin() as session:
            due = session.scalars(
                select(Delivery)
                .where(
                    Delivery.status == "pending",
                    Delivery.next_attempt_at <= now,
                    or_(Delivery.lease_until.is_(None), Delivery.lease_until < now),
                )
                .order_by(Delivery.next_attempt_at, Delivery.id)
                .limit(self.policy.per_round)
                .with_for_update(skip_locked=True)
            ).all()
            jobs = []
            until = now + timedelta(seconds=self.policy.lease_seconds)
            for d in due:
                d.lease_owner, d.lease_until = self.owner, until
                hook = session.get(Webhook, d.webhook_id)
                event = session.get(WebhookEvent, d.event_id)
                if hook is None or event is None:
                    continue
                if hook.id not in self._secrets:
                    self._secrets[hook.id] = secret_of(hook, self.kek)
                body = json.dumps(
                    {
                        "id": event.id,
                        "type": event.type,
                        "created_at": event.created_at.isoformat(),
                        "data": json.loads(event.data),
                    },
                    separators=(",", ":"),
                ).encode()
                jobs.append(Job(d.id, event.id, hook.url, self._secrets[hook.id], body))
            return jobs

    def _send(self, job: Job) -> tuple[int | None, str | None, int]:
        """(HTTP status or None, error text or None, milliseconds)."""
        start = time.perf_counter()
        try:
            target = resolve(job.url, production=self.production)  # again: DNS may have moved
            headers = {
                "Content-Type": "application/json",
                "User-Agent": "coalition-loyalty-webhooks/1",
                "Host": target.host_header,
                HEADER: signature(job.secret, job.body, int(time.time())),
                "Loyalty-Event-Id": job.event_id,
            }
            extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
            response = self._client.post(target.pinned_url, content=job.body, headers=headers, extensions=extensions)
            elapsed = int((time.perf_counter() - start) * 1000)
            if 200 <= response.status_code < 300:
                return response.status_code, None, elapsed
            return response.status_code, f"HTTP {response.status_code}", elapsed
        except UnsafeUrl as exc:
            return None, exc.message, int((time.perf_counter() - start) * 1000)
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}"[:500], int((time.perf_counter() - start) * 1000)

    def _record(self, job: Job, status: int | None, error: str | None, ms: int) -> None:
        now = utcnow()
        with self.sessions.begin() as session:
            d = session.get(Delivery, job.delivery_id)
            if d is None:
                return
            ok = error is None
            session.add(
                Attempt(delivery_id=d.id, at=now, status_code=status, error=error, duration_ms=ms, succeeded=ok)
            )
            d.attempts += 1
            d.last_status_code, d.last_error = status, error
            d.lease_owner, d.lease_until = None, None
            if d.status != "pending":  # cancelled meanwhile, or already recorded by a lease taken over
                return
            if ok:
                d.status, d.delivered_at = "succeeded", now
            elif now - d.created_at >= self.policy.give_up_after:
                d.status = "failed"
                log.warning("webhook delivery %s gave up after %s attempts: %s", d.id, d.attempts, error)
            else:
                d.next_attempt_at = now + timedelta(seconds=self.policy.delay(d.attempts))

    # ------------------------------------------------------------ the loop

    def run(self, stop: threading.Event, *, idle_seconds: float = 1.0) -> None:
        """Rounds until `stop` is set; a round that found work is followed at once by another."""
        while not stop.is_set():
            try:
                busy = self.run_once()
            except Exception:  # noqa: BLE001 - a database hiccup must not end deliveries
                log.exception("webhook delivery round failed; retrying")
                busy = 0
            if not busy:
                stop.wait(idle_seconds)
