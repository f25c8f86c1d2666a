"""kill -9 the gateway under load, again and again: nothing accepted is lost or applied twice."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from gateway.chain.backends import AnvilNode, free_port
from gateway.chain.ledger import Ledger
from gateway.core.config import REPO_ROOT


class GatewayProcess:
    def __init__(self, data_dir: Path, rpc_url: str) -> None:
        self.data_dir, self.rpc_url = data_dir, rpc_url
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.log = open(data_dir.parent / "gateway.log", "ab")  # noqa: SIM115 - closed in stop()

    def start(self) -> None:
        # Rate limit off: the tills post as fast as they can, and a 429 is not what this test is about.
        env = {
            **os.environ,
            "LOYALTY_GATEWAY__BATCH_WINDOW_MS": "20",
            "LOYALTY_GATEWAY__RATE_LIMIT_PER_SECOND": "100000",
        }
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gateway.cli",
                "serve",
                "--data-dir",
                str(self.data_dir),
                "--network",
                self.rpc_url,
                "--port",
                str(self.port),
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=self.log,
            stderr=self.log,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError("the gateway did not come up")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)
        self.log.close()


def enrol(url: str, data_dir: Path, member_id: str, *, member_url: str | None = None) -> dict[str, str]:
    """A managed EUR partner (1 point per 100 minor units) made with the admin key in
    `data_dir`, and one custodial member (through `member_url` if given); returns the
    partner's Authorization header."""
    admin = {"Authorization": f"Bearer {(data_dir / 'admin.key').read_text().strip()}"}
    partner = httpx.post(
        f"{url}/v1/partners",
        headers=admin,
        timeout=30,
        json={
            "name": "Till",
            "currency": "EUR",
            "earn_rate": {"points": 1, "per_minor_units": 100},
            "allowance": 10**9,
        },
    )
    assert partner.status_code == 201, partner.text
    key = {"Authorization": f"Bearer {partner.json()['api_key']}"}
    body = {"member_id": member_id, "pin": "1234"}
    enrolled = httpx.post(f"{member_url or url}/v1/members", headers=key, json=body, timeout=30)
    assert enrolled.status_code == 201, enrolled.text
    return key


def drain(database_url: str, seconds: float = 60) -> tuple[list[Any], list[int], str]:
    """Waits until no operation is in flight; returns (operations, batch nonces, relayer)."""
    engine = sa.create_engine(database_url)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            waiting = conn.execute(
                sa.text("SELECT count(*) FROM operations WHERE status IN ('accepted', 'submitted')")
            ).scalar_one()
        if waiting == 0:
            break
        time.sleep(0.2)
    with engine.connect() as conn:
        rows = list(conn.execute(sa.text("SELECT id, receipt_id, receipt_ref, status FROM operations")).all())
        nonces = [n for (n,) in conn.execute(sa.text("SELECT nonce FROM batches ORDER BY nonce"))]
        relayer = conn.execute(sa.text("SELECT DISTINCT sender FROM batches")).scalar_one()
    engine.dispose()
    return rows, nonces, relayer


def earned_refs(anvil: AnvilNode, data_dir: Path) -> list[str]:
    """receiptRef of every Earned event of the deployment in `data_dir`, from the chain."""
    record = json.loads((data_dir / "deployment.json").read_text())
    ledger = Ledger(anvil.w3, record["address"])
    logs: list[Any] = anvil.w3.eth.get_logs(
        {"address": ledger.address, "fromBlock": record["deployment_block"], "toBlock": "latest"}
    )
    return [
        "0x" + bytes(e.args["receiptRef"]).hex()
        for log in logs
        if (e := ledger.decode_log(log)) is not None and e.name == "Earned"
    ]


@pytest.fixture
def anvil() -> Iterator[AnvilNode]:
    node = AnvilNode()
    yield node
    node.close()


@pytest.mark.slow(seconds=60)
def test_kill_9_under_load_loses_nothing_and_doubles_nothing(anvil: AnvilNode, tmp_path: Path) -> None:
    gateway = GatewayProcess(tmp_path / "data", anvil.url)
    gateway.start()
    try:
        key = enrol(gateway.url, tmp_path / "data", "m1")

        accepted: dict[str, str] = {}  # receipt id -> operation id, from 202 answers
        stop = threading.Event()

        def till(name: str) -> None:
            """Sends earns one after another; on a dropped connection, retries the same request
            with the same Idempotency-Key until it gets an answer, as a real till would."""
            n = 0
            with httpx.Client(timeout=5) as client:
                while not stop.is_set():
                    receipt = f"{name}-{n}"
                    body = {
                        "member_id": "m1",
                        "receipt_id": receipt,
                        "amount_minor": 100 * (1 + n % 7),
                        "currency": "EUR",
                    }
                    while True:
                        try:
                            r = client.post(
                                f"{gateway.url}/v1/earn", json=body, headers={**key, "Idempotency-Key": receipt}
                            )
                        except httpx.HTTPError:
                            time.sleep(0.05)
                            continue
                        assert r.status_code == 202, r.text
                        accepted[receipt] = r.json()["operation_id"]
                        break
                    n += 1

        workers = [threading.Thread(target=till, args=(f"till{i}",), daemon=True) for i in range(4)]
        for worker in workers:
            worker.start()
        rng = random.Random(20261122)
        for _ in range(6):
            time.sleep(rng.uniform(0.5, 2.0))
            gateway.kill()
            gateway.start()
        time.sleep(1.0)
        stop.set()
        for worker in workers:
            worker.join(timeout=30)

        # Let the last batches land.
        rows, nonces, relayer = drain(f"sqlite:///{tmp_path / 'data' / 'gateway.sqlite'}")
    finally:
        gateway.stop()

    print(f"\n6 kills: {len(accepted)} earns answered 202, {len(rows)} stored, {len(nonces)} batches")
    assert len(accepted) > 50, "the load was too light to mean anything"
    by_receipt = {r.receipt_id: r for r in rows}
    # Every 202 is one stored operation, and every stored operation got its 202.
    assert set(accepted) == set(by_receipt)
    assert all(by_receipt[rid].id == op_id for rid, op_id in accepted.items())
    assert {r.status for r in rows} == {"confirmed"}

    # On-chain: exactly one Earned event per operation, matched by receipt reference.
    refs = earned_refs(anvil, tmp_path / "data")
    assert sorted(refs) == sorted(r.receipt_ref for r in rows)
    assert len(refs) == len(set(refs))
    print(f"{len(refs)} Earned events on-chain, relayer nonces 0..{len(nonces) - 1} without a gap")

    # No nonce gap, no nonce used twice: the batches hold 0..n-1 and the chain agrees.
    assert nonces == list(range(len(nonces)))
    assert anvil.w3.eth.get_transaction_count(relayer) == len(nonces)
