"""The gateway against a real node that stops answering, and one that reorganizes."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gateway.api.main import create_app
from gateway.app.bootstrap import open_runtime
from gateway.chain.backends import AnvilNode
from gateway.submitter.loop import Submitter
from tests.gateway.conftest import make_settings


@pytest.fixture
def anvil() -> Iterator[AnvilNode]:
    node = AnvilNode()
    yield node
    node.close()


def _setup(client: TestClient, admin_key: str) -> dict[str, str]:
    admin = {"Authorization": f"Bearer {admin_key}"}
    partner = client.post(
        "/v1/partners",
        headers=admin,
        json={"name": "P", "currency": "EUR", "earn_rate": {"points": 1, "per_minor_units": 100}, "allowance": 10**9},
    )
    key = {"Authorization": f"Bearer {partner.json()['api_key']}"}
    assert client.post("/v1/members", headers=key, json={"member_id": "m", "pin": "1234"}).status_code == 201
    return key


def _wait_confirmed(client: TestClient, key: dict[str, str], ids: list[str], seconds: float = 60) -> list[dict]:
    deadline = time.monotonic() + seconds
    while True:
        ops = [client.get(f"/v1/operations/{i}", headers=key).json() for i in ids]
        if all(o["status"] == "confirmed" for o in ops) or time.monotonic() > deadline:
            return ops
        time.sleep(0.2)


def test_rpc_outage_refuses_or_accepts_durably_and_resumes(anvil: AnvilNode, tmp_path: Path) -> None:
    # The till posts as fast as it can: a rate limit answering 429 is not what this test is about.
    settings = make_settings(None, rpc_timeout_seconds=1.5, rate_limit_per_second=100_000)
    runtime = open_runtime(settings, data_dir=tmp_path / "data", network=anvil.url, log=False)
    admin_key = (tmp_path / "data" / "admin.key").read_text().strip()
    answers: dict[int, int] = {}
    accepted: list[str] = []
    during_outage: list[int] = []  # answers given while the node was frozen
    frozen = threading.Event()
    stop = threading.Event()
    with TestClient(create_app(runtime)) as client:  # with its submitter thread
        key = _setup(client, admin_key)

        def till() -> None:
            n = 0
            while not stop.is_set():
                r = client.post(
                    "/v1/earn",
                    headers=key,
                    json={"member_id": "m", "receipt_id": f"R{n}", "amount_minor": 1000, "currency": "EUR"},
                )
                answers[r.status_code] = answers.get(r.status_code, 0) + 1
                if frozen.is_set():
                    during_outage.append(r.status_code)
                if r.status_code == 202:
                    accepted.append(r.json()["operation_id"])
                else:
                    assert r.status_code == 503, r.text
                    assert r.json()["error"]["code"] == "chain_unavailable"
                n += 1

        worker = threading.Thread(target=till, daemon=True)
        worker.start()
        time.sleep(1.0)
        anvil.process.send_signal(signal.SIGSTOP)  # the node stops answering, its state intact
        frozen.set()
        time.sleep(10)
        frozen.clear()
        anvil.process.send_signal(signal.SIGCONT)
        time.sleep(1.5)
        stop.set()
        worker.join(timeout=30)
        ops = _wait_confirmed(client, key, accepted)
        balance = client.get("/v1/members/m", headers=key).json()["balance"]
    runtime.close()
    # While the node was down the gateway kept answering: it accepts durably (the member, its
    # tier and the partner's nonces are cached, so an earn needs no chain read) or refuses
    # with 503 `chain_unavailable`, never a 500 and never a hang.
    assert len(during_outage) >= 5 and set(during_outage) <= {202, 503}, answers
    assert answers.get(202, 0) >= 5, answers
    assert {o["status"] for o in ops} == {"confirmed"}  # nothing accepted was lost
    # Nothing was applied twice: the balance is exactly the points of the confirmed earns, each
    # priced at a tier the member held: 10 (Green), 12 (Silver, x1.25 rounded down), 15 (Gold).
    assert {o["points"] for o in ops} <= {10, 12, 15}
    assert balance == sum(o["points"] for o in ops)


def test_reorged_operations_are_confirmed_again_not_lost_or_doubled(anvil: AnvilNode, tmp_path: Path) -> None:
    settings = make_settings(None, confirmations=2)
    runtime = open_runtime(settings, data_dir=tmp_path / "data", network=anvil.url, log=False)
    admin_key = (tmp_path / "data" / "admin.key").read_text().strip()
    with TestClient(create_app(runtime, run_submitter=False)) as client:
        key = _setup(client, admin_key)
        submitter = Submitter(runtime)
        ids = [
            client.post(
                "/v1/earn",
                headers=key,
                json={"member_id": "m", "receipt_id": f"R{i}", "amount_minor": 1000, "currency": "EUR"},
            ).json()["operation_id"]
            for i in range(5)
        ]
        submitter.step()  # signs, stores and broadcasts the batch
        deadline = time.monotonic() + 30
        while True:  # reads its receipt (anvil may answer a moment after the broadcast)
            submitter.step()
            first = client.get(f"/v1/operations/{ids[0]}", headers=key).json()
            if first["block_number"] or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert first["status"] == "submitted" and first["block_number"]  # mined, not yet deep enough
        anvil.mine(2)
        submitter.step()
        assert {client.get(f"/v1/operations/{i}", headers=key).json()["status"] for i in ids} == {"confirmed"}
        old_hash = first["block_hash"]

        anvil._call("anvil_reorg", 3, [])  # the last 3 blocks, our batch's among them, are replaced
        submitter.step()  # sees the block hash change: back to submitted, and broadcasts again
        assert {client.get(f"/v1/operations/{i}", headers=key).json()["status"] for i in ids} != {"confirmed"}
        for _ in range(5):
            submitter.step()
            anvil.mine(1)
        ops = [client.get(f"/v1/operations/{i}", headers=key).json() for i in ids]
        balance = client.get("/v1/members/m", headers=key).json()["balance"]
    runtime.close()
    assert {o["status"] for o in ops} == {"confirmed"}
    assert ops[0]["block_hash"] != old_hash
    assert balance == 50  # five earns of 10 points, once each
