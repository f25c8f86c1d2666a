"""Edges that only a real server shows: a client stalling mid-body, /healthz while every
worker thread is busy, and `loyalty serve`'s request log."""

from __future__ import annotations

import json
import socket
import sqlite3
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import httpx

from gateway.api.main import create_app
from gateway.app.bootstrap import open_runtime
from tests.gateway.conftest import make_settings
from tests.gateway.live import loyalty_serve, uvicorn_thread


def _stall(url: str, sent: bytes, declared: int) -> tuple[bytes, float, bool]:
    """Sends the headers and part of a body, then nothing: (what came back, when, closed?)."""
    where = urlparse(url)
    with socket.create_connection((where.hostname, where.port), timeout=20) as sock:
        sock.sendall(
            b"POST /v1/earn HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {declared}\r\n\r\n".encode()
            + sent
        )
        start = time.monotonic()
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
        elapsed = time.monotonic() - start
        try:
            closed = sock.recv(1) == b""
        except TimeoutError:
            closed = False
    return answer, elapsed, closed


def test_loyalty_serve_cuts_off_a_stalled_body_and_logs_each_request(tmp_path: Path) -> None:
    env = {"LOYALTY_GATEWAY__BODY_TIMEOUT_SECONDS": "1.5"}
    with loyalty_serve(tmp_path / "data", **env) as (url, process):
        answer, elapsed, closed = _stall(url, b'{"member_id": "card-1", "rec', 200)
        for _ in range(3):
            assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200
        process.terminate()
        _, log = process.communicate(timeout=30)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), answer
    assert json.loads(body)["error"]["code"] == "request_timeout"
    assert 1.0 < elapsed < 6, elapsed  # the setting, not the client's patience
    assert closed, "the connection stays open after the 408"
    # One line per request on the gateway.access logger (JSON, like every log line).
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    requests = [e["message"] for e in lines if e["logger"] == "gateway.access"]
    assert sum('"GET /healthz" 200' in m for m in requests) >= 3, requests
    assert any('"POST /v1/earn" 408' in m for m in requests), requests
    assert not [e for e in lines if e["logger"].startswith("alembic")]  # no migration chatter


def test_healthz_answers_at_once_while_every_worker_thread_waits(tmp_path: Path) -> None:
    data = tmp_path / "data"
    runtime = open_runtime(make_settings(None), data_dir=data, log=False)
    admin = {"Authorization": f"Bearer {(data / 'admin.key').read_text().strip()}"}
    try:
        with uvicorn_thread(create_app(runtime, run_submitter=False)) as url:
            partner = {"name": "P", "currency": "EUR", "earn_rate": {"points": 1, "per_minor_units": 100}}
            created = httpx.post(f"{url}/v1/partners", headers=admin, json={**partner, "allowance": 10}, timeout=30)
            key = {"Authorization": f"Bearer {created.json()['api_key']}"}
            # Another process holds the database's write lock: every write waits in a worker
            # thread, and sixty of them take all of the server's worker threads (40).
            blocker = sqlite3.connect(data / "gateway.sqlite", timeout=5)
            blocker.execute("BEGIN IMMEDIATE")
            codes: list[int] = []

            def enrol(i: int) -> None:
                body = {"member_id": f"m-{i}", "pin": "1234"}
                codes.append(httpx.post(f"{url}/v1/members", headers=key, json=body, timeout=60).status_code)

            writers = [threading.Thread(target=enrol, args=(i,)) for i in range(60)]
            for writer in writers:
                writer.start()
            try:
                time.sleep(1.0)
                start = time.monotonic()
                health = httpx.get(f"{url}/healthz", timeout=3)
                took = time.monotonic() - start
            finally:
                blocker.rollback()
                blocker.close()
            for writer in writers:
                writer.join(timeout=60)
            assert health.status_code == 200 and health.json()["database"] == "ok", health.text
            assert took < 1.0, f"/healthz took {took:.2f} s"
            assert health.json()["checked_seconds_ago"] < 3
            assert sorted(set(codes)) == [201] and len(codes) == 60
    finally:
        runtime.close()
