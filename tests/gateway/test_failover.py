"""Two gateway processes on one database (PostgreSQL, or one SQLite file): both serve the API,
one submits; kill the submitting one, the other takes over."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from gateway.chain.backends import AnvilNode, free_port
from gateway.core.config import REPO_ROOT
from tests.gateway.test_crash import GatewayProcess, drain, earned_refs, enrol


@pytest.fixture
def anvil() -> AnvilNode:
    node = AnvilNode()
    yield node  # type: ignore[misc]
    node.close()


def _leader(gateways: list[GatewayProcess]) -> GatewayProcess | None:
    for g in gateways:
        try:
            if httpx.get(f"{g.url}/healthz", timeout=2).json().get("submitter_leader"):
                return g
        except httpx.HTTPError:
            continue
    return None


def test_the_other_gateway_takes_over_submission(anvil: AnvilNode, tmp_path: Path, database_url: str | None) -> None:
    if database_url is not None:
        os.environ["LOYALTY_DATABASE_URL"] = database_url
    try:
        first = GatewayProcess(tmp_path / "data", anvil.url)
        first.start()  # deploys, migrates, writes the admin key
        second = GatewayProcess(tmp_path / "data", anvil.url)
        second.start()
    finally:
        os.environ.pop("LOYALTY_DATABASE_URL", None)
    gateways = [first, second]
    try:
        # The partner made through one process, its member through the other.
        key = enrol(first.url, tmp_path / "data", "m1", member_url=second.url)

        deadline = time.monotonic() + 20
        while (leader := _leader(gateways)) is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert leader is not None, "no gateway became the submitter"
        follower = second if leader is first else first
        health = httpx.get(f"{follower.url}/healthz").json()
        assert not health["submitter_leader"]  # exactly one submits,
        assert health["submitter_running"]  # and the other knows someone does

        accepted: dict[str, str] = {}
        stop = threading.Event()
        tills = list(gateways)  # the till keeps both addresses; the killed one just refuses

        def till() -> None:
            n = 0
            with httpx.Client(timeout=5) as client:
                while not stop.is_set():
                    body = {"member_id": "m1", "receipt_id": f"F-{n}", "amount_minor": 1000, "currency": "EUR"}
                    for g in (tills[n % 2], tills[(n + 1) % 2]):  # the other one if this one is down
                        try:
                            r = client.post(
                                f"{g.url}/v1/earn", json=body, headers={**key, "Idempotency-Key": body["receipt_id"]}
                            )
                        except httpx.HTTPError:
                            continue
                        assert r.status_code == 202, r.text
                        accepted[body["receipt_id"]] = r.json()["operation_id"]
                        break
                    n += 1

        worker = threading.Thread(target=till, daemon=True)
        worker.start()
        time.sleep(2)
        leader.kill()
        gateways.remove(leader)
        killed_at = time.monotonic()
        while not httpx.get(f"{follower.url}/healthz").json()["submitter_leader"]:
            assert time.monotonic() - killed_at < 15, "the surviving gateway did not take over"
            time.sleep(0.1)
        takeover = time.monotonic() - killed_at
        served_before = len(accepted)
        time.sleep(2)
        stop.set()
        worker.join(timeout=30)
        assert len(accepted) > served_before, "no earn was accepted after the take-over"

        rows, nonces, _ = drain(database_url or f"sqlite:///{tmp_path / 'data' / 'gateway.sqlite'}")
    finally:
        for g in gateways:
            g.stop()

    print(f"\ntake-over after {takeover:.1f} s; {len(accepted)} earns accepted, {len(nonces)} batches")
    assert len(accepted) > 20
    assert {r.receipt_id for r in rows} == set(accepted)
    assert {r.status for r in rows} == {"confirmed"}
    refs = earned_refs(anvil, tmp_path / "data")
    assert sorted(refs) == sorted(r.receipt_ref for r in rows)  # once each
    assert nonces == list(range(len(nonces)))


@contextmanager
def serving(anvil: AnvilNode, tmp_path: Path, *options: str, database_url: str | None = None) -> Iterator[Served]:
    """`loyalty serve OPTIONS` on anvil, up and answering, with a partner and a member "m";
    stopped (if still running) on the way out."""
    data = tmp_path / "data"
    data.mkdir()
    port = free_port()
    env = {**os.environ, "LOYALTY_GATEWAY__BATCH_WINDOW_MS": "20"}
    if database_url is not None:
        env["LOYALTY_DATABASE_URL"] = database_url
    log = open(tmp_path / "gateway.log", "wb")  # noqa: SIM115 - closed below
    command = [sys.executable, "-m", "gateway.cli", "serve", *options, "--port", str(port)]
    server = subprocess.Popen(
        [*command, "--data-dir", str(data), "--network", anvil.url], cwd=REPO_ROOT, env=env, stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and server.poll() is None, (tmp_path / "gateway.log").read_text()
            time.sleep(0.2)
        key = enrol(url, data, "m")
        yield Served(server, url, key, data)
    finally:
        if server.poll() is None:
            server.terminate()
            server.wait(timeout=30)
        log.close()


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    url: str
    key: dict[str, str]  # the partner's Authorization header
    data: Path

    def earn(self, receipt_id: str) -> str:
        body = {"member_id": "m", "receipt_id": receipt_id, "amount_minor": 1000, "currency": "EUR"}
        response = httpx.post(f"{self.url}/v1/earn", headers=self.key, json=body, timeout=30)
        assert response.status_code == 202, response.text
        return str(response.json()["operation_id"])


@pytest.mark.slow(seconds=130)  # the file's five tests together
def test_worker_processes_share_one_port_and_one_submitter(
    anvil: AnvilNode, tmp_path: Path, database_url: str | None
) -> None:
    with serving(anvil, tmp_path, "--workers", "3", database_url=database_url) as gw:
        # A new connection each time: the kernel spreads them over the workers.
        ids = {gw.earn(f"W-{n}") for n in range(60)}
        workers = Path(f"/proc/{gw.process.pid}/task/{gw.process.pid}/children").read_text().split()
        # Which process answers is the kernel's choice; whichever did, at most one submits.
        health = [httpx.get(f"{gw.url}/healthz", timeout=5).json() for _ in range(30)]
        leaders = {h["process"] for h in health if h["submitter_leader"]}
        rows, nonces, _ = drain(database_url or f"sqlite:///{gw.data / 'gateway.sqlite'}")
    assert len(workers) >= 3 and len(leaders) <= 1, (workers, health)  # 3 workers (+ a helper process)
    assert {r.id for r in rows} == ids and {r.status for r in rows} == {"confirmed"}
    assert sorted(earned_refs(anvil, gw.data)) == sorted(r.receipt_ref for r in rows)  # once each
    assert nonces == list(range(len(nonces)))


def _children(pid: int) -> set[int]:
    return {int(c) for t in Path(f"/proc/{pid}/task").iterdir() for c in (t / "children").read_text().split()}


def _submitter_of(pid: int) -> int | None:
    for child in _children(pid):
        try:
            if b"submit" in Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0"):
                return child
        except FileNotFoundError:
            continue
    return None


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return status != "Z"


def test_submitter_process_is_restarted_and_dies_with_the_gateway(anvil: AnvilNode, tmp_path: Path) -> None:
    """`loyalty serve --submitter-process`: the API process answers, a child submits; kill -9
    the child and it comes back (nothing lost or doubled); kill -9 the gateway and the child
    stops by itself instead of holding the submitter lock."""
    with serving(anvil, tmp_path, "--submitter-process") as gw:
        assert httpx.get(f"{gw.url}/healthz", timeout=5).json()["submitter_leader"] is False  # the child submits
        deadline = time.monotonic() + 30
        while not httpx.get(f"{gw.url}/healthz", timeout=5).json()["submitter_running"]:
            assert time.monotonic() < deadline, "/healthz never saw the child submitting"
            time.sleep(0.2)
        ids = {gw.earn(f"S-{n}") for n in range(20)}
        first = _submitter_of(gw.process.pid)
        assert first is not None
        os.kill(first, signal.SIGKILL)
        ids |= {gw.earn(f"S-{n}") for n in range(20, 40)}  # accepted meanwhile, submitted once it is back
        deadline = time.monotonic() + 30
        while (second := _submitter_of(gw.process.pid)) in (None, first):
            assert time.monotonic() < deadline, "the submitter process was not started again"
            time.sleep(0.1)
        rows, nonces, _ = drain(f"sqlite:///{gw.data / 'gateway.sqlite'}")
        assert {r.id for r in rows} == ids and {r.status for r in rows} == {"confirmed"}
        assert sorted(earned_refs(anvil, gw.data)) == sorted(r.receipt_ref for r in rows)  # once each
        assert nonces == list(range(len(nonces)))
        gw.process.send_signal(signal.SIGKILL)
        gw.process.wait()
        deadline = time.monotonic() + 30
        while _alive(second):
            assert time.monotonic() < deadline, "the submitter outlived its gateway"
            time.sleep(0.1)
