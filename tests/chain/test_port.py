"""The chain port's behaviour, one suite run against every backend: py-evm (eth-tester), the
revm engine and anvil (a JSON-RPC node). Requests, batches, relayed answers, typed refusals
(reverts with their data, stale nonces, duplicates) and the development controls must mean
the same whatever runs the chain (like eth-tester's `BaseTestBackendDirect`)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from web3 import HTTPProvider, Web3

from gateway.api.errors import STATUS
from gateway.chain.backends import (
    AlreadyKnown,
    AnvilNode,
    ChainBackend,
    EmbeddedChain,
    NonceTooLow,
    Reverted,
    RpcChain,
    WrongNonce,
    anvil_binary,
    chain_of,
)
from gateway.chain.jsonrpc import quantity
from gateway.chain.ledger import LedgerRevert, Sender, rpc, rpc_many
from gateway.core.errors import Category, ChainError, ChainFault
from tests.support import anvil_required

# A contract whose every call reverts with the 4 bytes 0xdeadbeef:
# PUSH4 deadbeef, PUSH1 224, SHL, PUSH1 0, MSTORE, PUSH1 4, PUSH1 0, REVERT.
RUNTIME = bytes.fromhex("63deadbeef60e01b60005260046000fd")
# Its creation code: CODECOPY the 16 runtime bytes (at offset 12) to memory and RETURN them.
INIT = bytes.fromhex("6010600c60003960106000f3") + RUNTIME
SELECTOR = bytes.fromhex("deadbeef")


def _open(kind: str) -> ChainBackend:
    if kind == "anvil":
        try:
            anvil_binary()
        except ChainError:
            if anvil_required():
                raise
            pytest.skip("anvil not installed (run scripts/bootstrap)")
        return AnvilNode()
    if kind == "revm":
        pytest.importorskip("pyrevm")
    return EmbeddedChain(engine=kind)


class Deployed:
    def __init__(self, chain: ChainBackend) -> None:
        self.chain = chain
        self.sender = Sender(chain.w3, chain.dev_keys[0])
        self.reverter = str(self.sender.send(None, INIT, gas=200_000)["contractAddress"])


@pytest.fixture(scope="module", params=["pyevm", "revm", "anvil"])
def deployed(request: pytest.FixtureRequest) -> Iterator[Deployed]:
    chain = _open(request.param)
    try:
        yield Deployed(chain)
    finally:
        chain.close()


@pytest.fixture
def on(deployed: Deployed) -> Iterator[Deployed]:
    """The deployed chain, reverted to its state before the test afterwards."""
    snapshot = deployed.chain.snapshot()
    try:
        yield deployed
    finally:
        deployed.chain.revert(snapshot)
        deployed.sender._nonce = deployed.sender._base_fee = None


def _call(to: str) -> list[Any]:
    return [{"to": to, "data": "0x"}, "latest"]


def test_the_port_of_a_web3_is_its_backend(on: Deployed) -> None:
    assert chain_of(on.chain.w3) is on.chain


def test_requests_answer_as_the_chain_is(on: Deployed) -> None:
    chain = on.chain
    assert quantity(chain.request("eth_chainId", [])) == chain.chain_id
    head = quantity(chain.request("eth_blockNumber", []))
    assert head == chain.w3.eth.block_number
    block = chain.request("eth_getBlockByNumber", [hex(head), False])
    assert quantity(block["timestamp"]) == chain.latest_timestamp()


def test_a_batch_answers_each_request_in_order(on: Deployed) -> None:
    chain = on.chain
    requests: list[tuple[str, list[Any]]] = [
        ("eth_getBlockByNumber", [hex(n), False]) for n in range(quantity(chain.request("eth_blockNumber", [])) + 1)
    ]
    requests.append(("eth_chainId", []))
    results = chain.batch_request(requests)
    assert [quantity(b["number"]) for b in results[:-1]] == list(range(len(requests) - 1))
    assert quantity(results[-1]) == chain.chain_id
    assert chain.batch_request([]) == []


def test_a_revert_is_typed_with_its_data_not_an_unavailable_chain(on: Deployed) -> None:
    with pytest.raises(Reverted) as raised:
        on.chain.request("eth_call", _call(on.reverter))
    assert raised.value.data == SELECTOR
    assert not isinstance(raised.value, ChainError)
    with pytest.raises(Reverted) as in_batch:
        on.chain.batch_request([("eth_chainId", []), ("eth_call", _call(on.reverter))])
    assert in_batch.value.data == SELECTOR


def test_the_ledger_client_decodes_a_revert_as_a_conflict(on: Deployed) -> None:
    for read in (
        lambda: rpc(on.chain.w3, "eth_call", _call(on.reverter)),
        lambda: rpc_many(on.chain.w3, [("eth_call", _call(on.reverter))]),
    ):
        with pytest.raises(LedgerRevert) as raised:
            read()
        error = raised.value
        assert error.error.name == "UnknownError" and error.error.args == {"data": "0xdeadbeef"}
        assert isinstance(error, ChainFault) and not isinstance(error, ChainError)
        assert STATUS[error.category] == 409 and error.category is Category.CONFLICT


def test_the_relayed_answer_of_a_revert_is_json_rpc_error_3(on: Deployed) -> None:
    answer = on.chain.answer("eth_call", _call(on.reverter), 7)
    assert answer["id"] == 7 and answer["jsonrpc"] == "2.0"
    assert answer["error"]["code"] == 3
    assert answer["error"].get("data", "0xdeadbeef") == "0xdeadbeef"  # py-evm's answer carries none
    head = on.chain.answer("eth_blockNumber", [], "x")
    assert head["id"] == "x" and head["result"].startswith("0x")


def test_a_stale_nonce_and_a_duplicate_are_typed(on: Deployed) -> None:
    sender, chain = on.sender, on.chain
    nonce = quantity(chain.request("eth_getTransactionCount", [sender.address, "pending"]))
    assert nonce >= 1  # the deployment used nonce 0
    stale, _ = sender.sign(on.reverter, b"", gas=50_000, nonce=nonce - 1)
    with pytest.raises(NonceTooLow):
        chain.request("eth_sendRawTransaction", ["0x" + stale.hex()])
    fresh, _ = sender.sign(on.reverter, b"", gas=50_000, nonce=nonce)
    chain.request("eth_sendRawTransaction", ["0x" + fresh.hex()])  # mined at once, status 0
    # The same transaction again: each node says it its own way, all of them a nonce or
    # duplicate refusal, never a revert.
    with pytest.raises((AlreadyKnown, NonceTooLow)):
        chain.request("eth_sendRawTransaction", ["0x" + fresh.hex()])


def test_the_sender_counts_again_after_a_nonce_refusal(on: Deployed) -> None:
    sender = on.sender
    sender.sign(on.reverter, b"", gas=50_000)  # counts its nonce from the chain
    assert sender._nonce is not None and sender._nonce >= 1
    sender._nonce -= 1  # as if another process had used the key since it counted
    receipt = sender.send("0x" + "42" * 20, b"", gas=50_000)  # refused once, counted again, sent
    assert receipt["status"] == 1
    assert issubclass(NonceTooLow, WrongNonce)


def test_time_travel_mining_and_snapshots(on: Deployed) -> None:
    chain = on.chain
    start = quantity(chain.request("eth_blockNumber", []))
    snapshot = chain.snapshot()
    target = chain.latest_timestamp() + 40 * 86_400
    chain.travel_to(target)
    assert chain.latest_timestamp() == target
    chain.mine(2)
    assert quantity(chain.request("eth_blockNumber", [])) == start + 3
    assert chain.latest_timestamp() >= target
    with pytest.raises(ChainError):
        chain.travel_to(target - 3600)  # before the head: refused, never a block back in time
    chain.revert(snapshot)
    assert quantity(chain.request("eth_blockNumber", [])) == start


def test_a_web3_built_elsewhere_gets_a_json_rpc_port(deployed: Deployed) -> None:
    if not isinstance(deployed.chain, RpcChain):
        pytest.skip("a JSON-RPC endpoint to connect to")
    w3 = Web3(HTTPProvider(deployed.chain.url))
    port = chain_of(w3)
    assert isinstance(port, RpcChain) and chain_of(w3) is port
    assert quantity(port.request("eth_chainId", [])) == deployed.chain.chain_id
    with pytest.raises(LedgerRevert):
        rpc(w3, "eth_call", _call(deployed.reverter))


def test_an_unreachable_node_is_unavailable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    chain = RpcChain(f"http://127.0.0.1:{port}", timeout=1.0)
    with pytest.raises(ChainError) as one:
        chain.request("eth_blockNumber", [])
    with pytest.raises(ChainError) as batch:
        chain.batch_request([("eth_blockNumber", []), ("eth_chainId", [])])
    for raised in (one.value, batch.value):
        assert STATUS[raised.category] == 503
    answer = chain.answer("eth_blockNumber", [], 1)
    assert answer["error"]["code"] == -32603 and answer["id"] == 1
