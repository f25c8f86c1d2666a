"""The read-only JSON-RPC endpoint, served by uvicorn, read by clients no one here wrote."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from web3 import HTTPProvider, Web3
from web3.exceptions import Web3RPCError

from gateway.chain.backends import EmbeddedChain, free_port
from gateway.chain.ledger import BatchResult, Ledger
from gateway.core.config import REPO_ROOT
from gateway.web.rpc import router
from tests.support import World, member


class Served:
    def __init__(self, world: World, first: BatchResult, url: str) -> None:
        self.world, self.first, self.url = world, first, url
        self.w3 = Web3(HTTPProvider(url))


@pytest.fixture(scope="module", params=["revm", "pyevm"])
def served(request: pytest.FixtureRequest) -> Iterator[Served]:
    if request.param == "revm":
        pytest.importorskip("pyrevm")
    chain = EmbeddedChain(engine=request.param)
    world = World.create(chain)
    _, alice = member("alice")
    first = world.earn(world.earn_op(1, alice, 12_300), world.earn_op(1, member("bob")[1], 5_000))
    world.earn(world.earn_op(2, alice, 4_000))
    app = FastAPI()
    app.include_router(router)
    app.state.runtime = SimpleNamespace(chain=chain)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield Served(world, first, f"http://127.0.0.1:{port}/rpc")
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        chain.close()


def test_web3_http_provider_reads_the_chain(served: Served) -> None:
    w3, world = served.w3, served.world
    _, alice = member("alice")
    assert w3.eth.chain_id == world.chain.chain_id
    head = w3.eth.block_number
    assert head == world.chain.w3.eth.block_number
    block = w3.eth.get_block(head, full_transactions=True)
    assert block["number"] == head and len(block["transactions"]) == 1
    assert w3.eth.get_block(block["hash"])["number"] == head
    tx_hash = served.first.receipt["transactionHash"]
    receipt = w3.eth.get_transaction_receipt(tx_hash)
    assert receipt["status"] == 1 and receipt["gasUsed"] == served.first.gas_used
    assert len(receipt["logs"]) == len(served.first.events)
    tx = w3.eth.get_transaction(tx_hash)
    assert tx["to"] == world.ledger.address and tx["from"] == world.relayer.address
    # The ledger client over HTTP: views at the head and at an older block, decoded events.
    ledger = Ledger(w3, world.ledger.address)
    assert ledger.balance_of(alice) == 123 + 60
    assert ledger.balance_of(alice, block=int(receipt["blockNumber"])) == 123
    earned = w3.eth.get_logs({"address": world.ledger.address, "fromBlock": 0, "toBlock": "latest"})
    names = [e.name for log in earned if (e := ledger.decode_log(log)) is not None]
    assert names.count("Earned") == 3 and names.count("PartnerAdded") == 3
    topic = next(log["topics"][0] for log in earned if (e := ledger.decode_log(log)) and e.name == "Earned")
    by_topic = w3.eth.get_logs({"address": world.ledger.address, "fromBlock": 0, "topics": [topic]})
    assert len(by_topic) == 3 and all(log["topics"][0] == topic for log in by_topic)
    assert w3.eth.get_balance(world.relayer.address) > 0
    assert len(w3.eth.get_code(world.ledger.address)) > 1_000
    assert w3.eth.get_transaction_count(world.relayer.address) == world.chain.w3.eth.get_transaction_count(
        world.relayer.address
    )
    assert w3.net.version == str(world.chain.chain_id)


def test_writes_are_refused(served: Served) -> None:
    w3, world = served.w3, served.world
    head = w3.eth.block_number
    signed = world.relayer.account.sign_transaction(
        {"to": world.ledger.address, "value": 0, "gas": 50_000, "gasPrice": 10**10, "nonce": 10_000, "chainId": 1}
    )
    with pytest.raises(Web3RPCError, match="read-only"):
        w3.eth.send_raw_transaction(signed.raw_transaction)
    with pytest.raises(Web3RPCError, match="read-only"):
        w3.eth.send_transaction({"from": world.relayer.address, "to": world.admin.address, "value": 1})
    for method in ("evm_mine", "anvil_setBalance", "personal_unlockAccount", "eth_sign"):
        answer = httpx.post(served.url, json={"jsonrpc": "2.0", "id": 7, "method": method, "params": []}).json()
        assert answer["id"] == 7 and "read-only" in answer["error"]["message"], answer
    assert w3.eth.block_number == head


def test_batches_errors_and_notifications(served: Served) -> None:
    batch = [
        {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []},
        {"jsonrpc": "2.0", "id": "two", "method": "eth_sendRawTransaction", "params": ["0x00"]},
        {"jsonrpc": "2.0", "id": 3, "method": "eth_nope", "params": []},
        {"jsonrpc": "2.0", "method": "eth_blockNumber", "params": []},  # a notification: no answer
        {"jsonrpc": "2.0", "id": 5, "method": "eth_getBlockByNumber", "params": ["0x0", False]},
    ]
    answers = httpx.post(served.url, json=batch).json()
    by_id = {a["id"]: a for a in answers}
    assert set(by_id) == {1, "two", 3, 5}
    assert int(by_id[1]["result"], 16) == served.world.chain.chain_id
    assert by_id["two"]["error"]["code"] == -32601 and by_id[3]["error"]["code"] == -32601
    assert by_id[5]["result"]["number"] == "0x0"
    assert httpx.post(served.url, content=b"{nope").json()["error"]["code"] == -32700
    assert httpx.post(served.url, json=[]).json()["error"]["code"] == -32600
    too_wide = {
        "jsonrpc": "2.0",
        "id": 9,
        "method": "eth_getLogs",
        "params": [{"fromBlock": "0x0", "toBlock": hex(10**6)}],
    }
    assert "at most" in httpx.post(served.url, json=too_wide).json()["error"]["message"]
    revert = {
        "jsonrpc": "2.0",
        "id": 10,
        "method": "eth_call",
        "params": [{"to": served.world.ledger.address, "data": "0xdeadbeef"}, "latest"],
    }
    assert httpx.post(served.url, json=revert).json()["error"]["code"] == 3


def _cast() -> str | None:
    for candidate in (
        os.environ.get("CAST"),
        str(REPO_ROOT / "node_modules/@foundry-rs/cast-linux-amd64/bin/cast"),
        shutil.which("cast"),
    ):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def test_foundry_cast_reads_the_chain(served: Served) -> None:
    cast = _cast()
    if cast is None:
        pytest.skip("Foundry's cast not installed (npm package @foundry-rs/cast, or set CAST)")
    world = served.world
    _, alice = member("alice")

    def run(*args: str) -> str:
        done = subprocess.run([cast, *args, "--rpc-url", served.url], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    assert run("chain-id") == str(world.chain.chain_id)
    assert int(run("block-number")) == world.chain.w3.eth.block_number
    balance = run("call", world.ledger.address, "balanceOf(address)(uint256)", alice)
    assert balance.split()[0] == str(123 + 60)
    tx_hash = served.first.receipt["transactionHash"].to_0x_hex()
    receipt: dict[str, Any] = json.loads(run("receipt", tx_hash, "--json"))
    assert receipt["status"] == "0x1" and len(receipt["logs"]) == len(served.first.events)
    assert json.loads(run("tx", tx_hash, "--json"))["hash"] == tx_hash
    assert json.loads(run("block", "latest", "--json"))["number"] == hex(world.chain.w3.eth.block_number)
    assert int(run("balance", world.relayer.address)) > 0
    assert len(run("code", world.ledger.address)) > 2_000
    logs = json.loads(run("logs", "--address", world.ledger.address, "--from-block", "0", "--json"))
    assert len(logs) >= len(served.first.events)
    refused = subprocess.run(
        [cast, "publish", "0x02", "--rpc-url", served.url], capture_output=True, text=True, timeout=60
    )
    assert refused.returncode != 0 and "read-only" in refused.stderr
