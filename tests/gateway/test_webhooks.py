"""Signed webhooks (SPEC section 6, r2) against a real HTTP receiver on 127.0.0.1, on SQLite and
PostgreSQL: audience, signatures, retries while the receiver is down, two senders at once, a
sender killed with SIGKILL mid-retry, hostile URLs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from gateway.core.config import DEV_KEY_ENCRYPTION_KEY
from gateway.core.errors import Conflict, Invalid, NotFound
from gateway.db.models import Partner
from gateway.db.session import make_engine, make_sessionmaker, migrate
from gateway.webhooks.deliver import Deliverer, Policy
from gateway.webhooks.models import Attempt, Delivery
from gateway.webhooks.signing import HEADER, signature, verify
from gateway.webhooks.store import create_webhook, delete_webhook, deliveries, list_webhooks, publish, retry
from gateway.webhooks.urls import UnsafeUrl, resolve

KEK = DEV_KEY_ENCRYPTION_KEY
FAST = Policy(base_seconds=0.05, cap_seconds=0.2, lease_seconds=5, timeout_seconds=5)


class Receiver:
    """A real HTTP server recording what it receives; `failing` makes it answer 503."""

    def __init__(self, port: int = 0, delay: float = 0.0) -> None:
        self.received: list[tuple[str, dict[str, str], bytes]] = []
        self.failing = False
        self.delay = delay
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers["Content-Length"])
                body = self.rfile.read(length)
                if len(body) != length:  # the sender died mid-request: nothing was delivered
                    return
                if outer.delay:
                    time.sleep(outer.delay)
                if outer.failing:
                    self.send_response(503)
                    self.end_headers()
                    return
                with outer.lock:
                    outer.received.append((self.path, dict(self.headers), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def ids(self, path: str | None = None) -> list[str]:
        with self.lock:
            return [json.loads(b)["id"] for p, _, b in self.received if path is None or p == path]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def db_url(database_url: str | None, tmp_path: Path) -> str:
    url = database_url or f"sqlite:///{tmp_path / 'gateway.sqlite'}"
    migrate(url)
    with make_sessionmaker(make_engine(url)).begin() as session:
        for pid in (1, 2):
            session.add(
                Partner(
                    id=pid,
                    name=f"partner {pid}",
                    currency="EUR",
                    rate_points=1,
                    rate_per_minor_units=100,
                    signer_address="0x" + "11" * 20,
                    managed=False,
                )
            )
    return url


@pytest.fixture
def sessions(db_url: str) -> sessionmaker[Session]:
    return make_sessionmaker(make_engine(db_url, writer=True))


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


def _drain(deliverer: Deliverer, sessions: sessionmaker[Session], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        deliverer.run_once()
        with sessions() as s:
            if not s.scalars(select(Delivery.id).where(Delivery.status == "pending")).first():
                return
        time.sleep(0.02)
    raise AssertionError("deliveries still pending")


def _hook(sessions: sessionmaker[Session], partner: int | None, url: str, events: list[str]) -> tuple[str, str]:
    with sessions.begin() as s:
        sub, secret = create_webhook(s, partner_id=partner, url=url, events=events, kek=KEK, production=False)
    return sub.webhook_id, secret


def _publish(sessions: sessionmaker[Session], kind: str, partner: int | None, key: str, **data: Any) -> str | None:
    with sessions.begin() as s:
        return publish(s, type=kind, data=data, partner_id=partner, dedupe_key=key)


def test_each_subscriber_gets_its_own_events_signed(sessions: sessionmaker[Session], receiver: Receiver) -> None:
    _, s1 = _hook(sessions, 1, receiver.url("/p1"), ["operation.confirmed", "programme.change_scheduled"])
    _, s2 = _hook(sessions, 2, receiver.url("/p2"), ["*"])
    _, s0 = _hook(sessions, None, receiver.url("/operator"), ["*"])
    e1 = _publish(sessions, "operation.confirmed", 1, "op-1", operation_id="a")
    e2 = _publish(sessions, "operation.confirmed", 2, "op-2", operation_id="b")
    e3 = _publish(sessions, "member.points_expiring", 1, "exp-1", member_id="ana")  # p1 did not subscribe to it
    e4 = _publish(sessions, "programme.change_scheduled", None, "chg-1", change_id=1)
    assert _publish(sessions, "operation.confirmed", 1, "op-1", operation_id="a") is None  # the same event again
    deliverer = Deliverer(sessions, kek=KEK, production=False, policy=FAST)
    _drain(deliverer, sessions)
    assert sorted(receiver.ids("/p1")) == sorted([e1, e4])
    assert sorted(receiver.ids("/p2")) == sorted([e2, e4])
    assert sorted(receiver.ids("/operator")) == sorted([e1, e2, e3, e4])
    secrets = {"/p1": s1, "/p2": s2, "/operator": s0}
    for path, headers, body in receiver.received:
        assert verify(secrets[path], headers[HEADER], body)
        assert not verify(s2 if path != "/p2" else s1, headers[HEADER], body)  # another's secret fails
        assert not verify(secrets[path], headers[HEADER], body + b" ")  # a changed body fails
        payload = json.loads(body)
        assert set(payload) == {"id", "type", "created_at", "data"}
        assert datetime.fromisoformat(payload["created_at"]).tzinfo is not None
    deliverer.close()


def test_receiver_down_for_a_while_then_up_gets_every_event(sessions: sessionmaker[Session]) -> None:
    receiver = Receiver()
    port = receiver.port
    webhook_id, _ = _hook(sessions, 1, receiver.url("/in"), ["*"])
    receiver.stop()  # down: connections refused
    ids = [_publish(sessions, "operation.confirmed", 1, f"op-{i}", n=i) for i in range(5)]
    deliverer = Deliverer(sessions, kek=KEK, production=False, policy=FAST)
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        deliverer.run_once()
        time.sleep(0.02)
    receiver = Receiver(port)
    receiver.failing = True  # up, but answering 503 for a while
    for _ in range(5):
        deliverer.run_once()
        time.sleep(0.1)
    receiver.failing = False
    _drain(deliverer, sessions)
    assert sorted(receiver.ids()) == sorted(ids)
    with sessions() as s:
        log = deliveries(s, webhook_id, partner_id=1)
    assert len(log) == 5
    for d in log:
        assert d["status"] == "succeeded" and d["attempts"] >= 2
        assert [a["succeeded"] for a in d["log"]].count(True) == 1
        assert d["log"][-1]["succeeded"] and not d["log"][0]["succeeded"]
    receiver.stop()
    deliverer.close()


def test_backoff_doubles_and_gives_up_after_a_day(sessions: sessionmaker[Session], receiver: Receiver) -> None:
    policy = Policy()
    assert 8 <= policy.delay(1) <= 12
    assert 16 <= policy.delay(2) <= 24 and 0.8 * 3600 <= policy.delay(30) <= 1.2 * 3600
    assert policy.give_up_after > timedelta(hours=24)  # and at most an hour apart until then
    webhook_id, _ = _hook(sessions, 1, receiver.url("/x"), ["*"])
    receiver.failing = True
    _publish(sessions, "operation.rejected", 1, "r-1")
    quick = Deliverer(sessions, kek=KEK, production=False, policy=Policy(base_seconds=0.01, give_up_after=timedelta(0)))
    quick.run_once()
    with sessions() as s:
        [d] = deliveries(s, webhook_id, partner_id=1)
    assert (d["status"], d["attempts"], d["last_status_code"]) == ("failed", 1, 503)
    receiver.failing = False
    with sessions.begin() as s:
        retry(s, webhook_id, d["delivery_id"], partner_id=1)
    quick.run_once()
    with sessions() as s:
        [d] = deliveries(s, webhook_id, partner_id=1)
        with pytest.raises(Conflict, match="already succeeded"):
            retry(s, webhook_id, d["delivery_id"], partner_id=1)
        with pytest.raises(NotFound):  # another partner's webhook does not exist for it
            retry(s, webhook_id, d["delivery_id"], partner_id=2)
    assert (d["status"], d["attempts"]) == ("succeeded", 2)
    quick.close()


def test_two_senders_never_send_one_event_twice(sessions: sessionmaker[Session]) -> None:
    receiver = Receiver(delay=0.01)
    _hook(sessions, 1, receiver.url("/in"), ["*"])
    ids = [_publish(sessions, "operation.confirmed", 1, f"op-{i}", n=i) for i in range(120)]
    senders = [Deliverer(sessions, kek=KEK, production=False, policy=FAST) for _ in range(3)]
    threads = [threading.Thread(target=_drain, args=(d, sessions, 60)) for d in senders]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    counts = Counter(receiver.ids())
    assert sorted(counts) == sorted(ids)
    assert set(counts.values()) == {1}
    receiver.stop()
    for d in senders:
        d.close()


def test_sender_killed_mid_retry_resumes_after_restart(db_url: str, sessions: sessionmaker[Session]) -> None:
    receiver = Receiver()
    webhook_id, _ = _hook(sessions, 1, receiver.url("/in"), ["*"])
    receiver.failing = True
    ids = [_publish(sessions, "operation.confirmed", 1, f"op-{i}", n=i) for i in range(20)]
    command = [sys.executable, "-m", "gateway.webhooks.worker", "--database-url", db_url]
    command += ["--base-seconds", "0.1", "--cap-seconds", "0.3", "--lease-seconds", "2", "--idle-seconds", "0.05"]
    env = {**os.environ, "LOYALTY_ENV": "development"}
    worker = subprocess.Popen(command, env=env)
    try:
        deadline = time.monotonic() + 120  # a loaded machine starts Python slowly
        while time.monotonic() < deadline:  # wait until it is retrying
            with sessions() as s:
                if s.scalar(select(Attempt.id).where(Attempt.succeeded.is_(False)).offset(19).limit(1)):
                    break
            time.sleep(0.05)
        else:
            with sessions() as s:
                made = s.scalar(select(func.count(Attempt.id)))
            raise AssertionError(f"the worker made {made} attempts in 120 s; exit code {worker.poll()}")
        receiver.failing = False
        time.sleep(0.1)  # some go through...
        worker.send_signal(signal.SIGKILL)  # ...and the sender dies mid-round
        worker.wait(10)
        delivered_before = len(set(receiver.ids()))
        worker = subprocess.Popen(command, env=env)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(set(receiver.ids())) < len(ids):
            time.sleep(0.1)
        # The receiver has the last body a moment before the worker records its 2xx: let the
        # worker finish recording before it is stopped (the checks below are on that record).
        while time.monotonic() < deadline:
            with sessions() as s:
                if all(d["status"] == "succeeded" for d in deliveries(s, webhook_id, partner_id=1)):
                    break
            time.sleep(0.1)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(10)
    assert set(receiver.ids()) == set(ids), f"{delivered_before} delivered before the kill"
    with sessions() as s:
        log = deliveries(s, webhook_id, partner_id=1)
    assert all(d["status"] == "succeeded" for d in log)
    assert all([a["succeeded"] for a in d["log"]].count(True) == 1 for d in log)
    receiver.stop()


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "https://127.0.0.1/hook",
        "https://localhost/hook",
        "https://10.1.2.3/hook",
        "https://192.168.0.10/hook",
        "https://172.16.5.4/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/hook",
        "https://[::ffff:127.0.0.1]/hook",
        "https://0.0.0.0/hook",
        "https://2130706433/hook",  # 127.0.0.1 written as one number
        "https://user:pw@example.com/hook",
        "ftp://example.com/hook",
        "file:///etc/passwd",
        "https:///nohost",
        "https://example.com:99999/hook",
        "https://exa mple.com/hook",
        "https://" + "a" * 3000 + ".com/",
        "https://no-such-host.invalid/hook",
    ],
)
def test_production_refuses_hostile_urls(url: str) -> None:
    with pytest.raises(UnsafeUrl):
        resolve(url, production=True)


def test_development_allows_loopback_and_production_rechecks_at_delivery(
    sessions: sessionmaker[Session], receiver: Receiver
) -> None:
    assert resolve(receiver.url("/x"), production=False).address == "127.0.0.1"
    with sessions.begin() as s, pytest.raises(UnsafeUrl):
        create_webhook(s, partner_id=1, url=receiver.url("/x"), events=["*"], kek=KEK, production=True)
    with sessions.begin() as s, pytest.raises(Invalid, match="unknown event types"):
        create_webhook(s, partner_id=1, url=receiver.url("/x"), events=["member.hacked"], kek=KEK, production=False)
    webhook_id, _ = _hook(sessions, 1, receiver.url("/x"), ["*"])  # registered in development...
    _publish(sessions, "operation.confirmed", 1, "op-1")
    strict = Deliverer(sessions, kek=KEK, production=True, policy=FAST)  # ...delivered in production
    strict.run_once()
    assert receiver.received == []
    with sessions() as s:
        [d] = deliveries(s, webhook_id, partner_id=1)
    assert (d["status"], d["last_error"]) == ("pending", "webhook URLs must use https")
    strict.close()


def test_a_deleted_webhook_gets_nothing_more(sessions: sessionmaker[Session], receiver: Receiver) -> None:
    webhook_id, _ = _hook(sessions, 1, receiver.url("/x"), ["*"])
    _publish(sessions, "operation.confirmed", 1, "op-1")
    with sessions.begin() as s:
        with pytest.raises(NotFound):
            delete_webhook(s, webhook_id, partner_id=2)
        delete_webhook(s, webhook_id, partner_id=1)
    with sessions() as s:
        assert list_webhooks(s, partner_id=1) == []
    Deliverer(sessions, kek=KEK, production=False, policy=FAST).run_once()
    assert receiver.received == []
    with sessions() as s:
        assert s.scalars(select(Delivery.status)).all() == ["cancelled"]


def test_the_verification_snippet_of_the_partners_guide_accepts_our_signatures() -> None:
    text = (Path(__file__).parents[2] / "docs" / "partners.md").read_text()
    snippet = text[text.index("Verify every request") :].split("```python\n", 1)[1].split("\n```", 1)[0]
    scope: dict[str, Any] = {}
    exec(compile(snippet, "partners.md", "exec"), scope)  # noqa: S102 - our own documentation
    body = b'{"id":"evt_1","type":"operation.confirmed"}'
    header = signature("whsec_" + "ab" * 32, body, int(time.time()))
    assert scope["verify"]("whsec_" + "ab" * 32, header, body)
    assert not scope["verify"]("whsec_" + "cd" * 32, header, body)
    assert not scope["verify"]("whsec_" + "ab" * 32, signature("whsec_" + "ab" * 32, body, 1_000), body)
