"""The revm embedded chain: gas equal to anvil's and py-evm's, past blocks, persistence, choice."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from eth_utils import keccak

from gateway.chain.backends import (
    AnvilNode,
    ChainBackend,
    EmbeddedChain,
    anvil_binary,
    anvil_dev_keys,
    embedded_engine,
)
from gateway.chain.backends.revm import state as revm_state
from gateway.chain.backends.revm.chain import RevmChain
from gateway.chain.ledger import Ledger, LedgerRevert, Sender
from gateway.core.config import REPO_ROOT
from gateway.core.errors import ChainError
from gateway.points.rules import month_of, month_start
from tests.support import DAY, World, anvil_required, member

pytest.importorskip("pyrevm")


def _anvil() -> AnvilNode:
    try:
        anvil_binary()
    except ChainError:
        if anvil_required():
            raise
        pytest.skip("anvil not installed (run scripts/bootstrap)")
    return AnvilNode()


def _scenario(chain: ChainBackend, start: int, size: int) -> list[tuple[str, int]]:
    """A deploy, the policy and partners, then earn (new and existing members), redeem and
    reverse batches; returns (what, gas) of every transaction in chain order."""
    chain.travel_to(start)
    world = World.create(chain)
    gas: list[tuple[str, int]] = []
    for number in range(1, chain.w3.eth.block_number + 1):
        for tx_hash in chain.w3.eth.get_block(number)["transactions"]:
            receipt = chain.w3.eth.get_transaction_receipt(tx_hash)
            gas.append((f"setup block {number}", int(receipt["gasUsed"])))
    members = [member(f"gas-{i}") for i in range(size)]
    first = world.earn(*[world.earn_op(1, address, 10_000 + i) for i, (_, address) in enumerate(members)])
    gas.append((f"earnBatch {size} new members", first.gas_used))
    again = world.earn(*[world.earn_op(2, address, 5_000) for _, address in members])
    gas.append((f"earnBatch {size} existing members", again.gas_used))
    single = world.earn(world.earn_op(1, members[0][1], 777))
    gas.append(("earnBatch 1 existing member", single.gas_used))
    redeemed = world.redeem(*[world.redeem_op(key, 1, 10) for key, _ in members[: size // 2]])
    gas.append((f"redeemBatch {size // 2}", redeemed.gas_used))
    records = first.earn_records()[: size // 2]
    reversed_ = world.reverse(*[world.reverse_op(record, 5) for record in records])
    gas.append((f"reverseBatch {size // 2}", reversed_.gas_used))
    rejected = world.earn(world.earn_op(1, members[1][1], 1, key=keccak(text="nobody").hex()))
    gas.append(("earnBatch with a rejected earn", rejected.gas_used))
    # Each batch of issuance or redemption also commits its Merkle root in one event.
    assert [len(r.events) for r in (first, again, redeemed, reversed_)] == [2 * size + 1, 2 * size + 1, size + 1, size]
    balances = world.ledger.views([("balanceOf", (address,)) for _, address in members])
    gas.append(("sum of balances", sum(balances)))
    return gas


def _start() -> int:
    month = month_of(int(time.time())) + 2
    return month_start(month) + 14 * DAY + 12 * 3600


@pytest.mark.anvil
def test_gas_equals_anvils_for_the_same_transactions() -> None:
    """Same keys, chain id and nonces, so byte-identical transactions on both chains."""
    start = _start()
    anvil = _anvil()
    try:
        expected = _scenario(anvil, start, 100)
    finally:
        anvil.close()
    revm = RevmChain(chain_id=31337, dev_keys=list(anvil_dev_keys()))
    try:
        got = _scenario(revm, start, 100)
    finally:
        revm.close()
    assert got == expected


def test_gas_equals_py_evms_for_the_same_transactions() -> None:
    start = _start()
    pyevm = EmbeddedChain(engine="pyevm")
    assert type(pyevm) is EmbeddedChain
    try:
        expected = _scenario(pyevm, start, 10)  # py-evm is slow: smaller batches
    finally:
        pyevm.close()
    revm = EmbeddedChain(engine="revm")
    assert isinstance(revm, RevmChain)
    try:
        assert revm.dev_keys == pyevm.dev_keys and revm.chain_id == pyevm.chain_id
        got = _scenario(revm, start, 10)
    finally:
        revm.close()
    assert got == expected


# ------------------------------------------------------------------ past blocks


@pytest.fixture
def world() -> Any:
    chain = RevmChain()
    try:
        yield World.create(chain)
    finally:
        chain.close()


def test_calls_and_reads_at_a_past_block_see_that_block(world: World) -> None:
    w3 = world.chain.w3
    _, alice = member("alice")
    world.earn(world.earn_op(1, alice, 12_300))
    before = w3.eth.block_number
    relayer_balance = w3.eth.get_balance(world.relayer.address)
    relayer_nonce = w3.eth.get_transaction_count(world.relayer.address)
    world.earn(world.earn_op(1, alice, 5_000))
    world.earn(world.earn_op(1, alice, 1_000))
    assert world.ledger.balance_of(alice) == 123 + 50 + 10
    assert world.ledger.balance_of(alice, block=before) == 123
    assert world.ledger.balance_of(alice, block=before - 1) == 0
    assert world.ledger.views([("balanceOf", (alice,)), ("totalSupply", ())], before) == [123, 123]
    assert w3.eth.get_balance(world.relayer.address, before) == relayer_balance
    assert w3.eth.get_balance(world.relayer.address) < relayer_balance
    assert w3.eth.get_transaction_count(world.relayer.address, before) == relayer_nonce
    assert w3.eth.get_code(world.ledger.address, 0) == b""
    assert len(w3.eth.get_code(world.ledger.address)) > 1_000
    # the head's state is back after answering at an older block
    assert world.ledger.balance_of(alice) == 183
    world.earn(world.earn_op(1, alice, 100))
    assert world.ledger.balance_of(alice) == 184


def test_a_call_too_far_back_is_refused_not_answered_with_the_head(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, alice = member("alice")
    world.earn(world.earn_op(1, alice, 12_300))
    monkeypatch.setattr(revm_state, "MAX_HISTORY_CHANGES", 3)
    with pytest.raises(ChainError, match="too far back"):
        world.ledger.balance_of(alice, block=1)
    with pytest.raises(ChainError, match="not on this chain yet"):
        world.ledger.balance_of(alice, block=world.chain.w3.eth.block_number + 5)
    assert world.ledger.balance_of(alice) == 123


def test_a_reverted_transaction_is_mined_and_explained(world: World) -> None:
    stranger = Sender(world.chain.w3, world.chain.dev_keys[5])
    with pytest.raises(LedgerRevert) as failure:
        world.ledger.call(stranger, "setTransfersEnabled", True, gas=200_000)
    assert "AccessControl" in failure.value.error.name
    receipt = world.chain.w3.eth.get_block("latest")
    tx = world.chain.w3.eth.get_transaction_receipt(receipt["transactions"][0])
    assert tx["status"] == 0 and 21_000 < tx["gasUsed"] < 200_000


def test_snapshot_and_revert_restore_state_and_blocks(world: World) -> None:
    _, alice = member("alice")
    head = world.chain.w3.eth.block_number
    snapshot = world.chain.snapshot()
    world.earn(world.earn_op(1, alice, 12_300))
    world.chain.travel_to(world.chain.latest_timestamp() + 40 * DAY)
    assert world.ledger.balance_of(alice) == 123
    world.chain.revert(snapshot)
    assert world.chain.w3.eth.block_number == head
    assert world.ledger.balance_of(alice) == 0
    world.relayer._nonce = None
    world.earn(world.earn_op(1, alice, 100))
    assert world.ledger.balance_of(alice) == 1


# ------------------------------------------------------------------ persistence and choice


@pytest.mark.parametrize("engine", ["revm", "pyevm"])
def test_each_engine_keeps_its_chain_across_a_restart(tmp_path: Path, engine: str) -> None:
    path = tmp_path / "chain.sqlite"
    world = World.create(EmbeddedChain(path, engine=engine))
    assert world.chain.engine_name == engine  # type: ignore[attr-defined]
    _, alice = member("alice")
    world.earn(world.earn_op(1, alice, 12_300))
    head, address = world.chain.w3.eth.block_number, world.ledger.address
    timestamp = world.chain.latest_timestamp()
    world.chain.close()

    chain = EmbeddedChain(path)  # auto: the file's own engine
    assert chain.engine_name == engine  # type: ignore[attr-defined]
    ledger = Ledger(chain.w3, address)
    assert chain.w3.eth.block_number == head and chain.latest_timestamp() == timestamp
    assert ledger.balance_of(alice) == 123
    sender = Sender(chain.w3, chain.dev_keys[1])
    message = world.earn_op(1, alice, 1_000)
    ledger.earn_batch(sender, [message])
    assert ledger.balance_of(alice) == 133
    assert ledger.balance_of(alice, block=head) == 123
    chain.close()


def test_the_engine_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("LOYALTY_CHAIN_ENGINE", raising=False)
    assert embedded_engine() == "revm"
    monkeypatch.setenv("LOYALTY_CHAIN_ENGINE", "pyevm")
    assert embedded_engine() == "pyevm"
    assert embedded_engine("revm") == "revm"
    monkeypatch.setenv("LOYALTY_CHAIN_ENGINE", "geth")
    with pytest.raises(ChainError, match="unknown chain engine"):
        embedded_engine()
    monkeypatch.delenv("LOYALTY_CHAIN_ENGINE")
    # Where pyrevm does not import (no wheel for the platform), auto falls back to py-evm.
    monkeypatch.setitem(sys.modules, "pyrevm", None)
    assert embedded_engine() == "pyevm"
    with pytest.raises(ChainError, match="needs pyrevm"):
        embedded_engine("revm")
    monkeypatch.delitem(sys.modules, "pyrevm")
    # A py-evm chain file stays on py-evm; asking for revm on it is refused.
    path = tmp_path / "chain.sqlite"
    EmbeddedChain(path, engine="pyevm").close()
    assert embedded_engine(None, path) == "pyevm"
    with pytest.raises(ChainError, match="holds a py-evm chain"):
        embedded_engine("revm", path)


def test_every_receipt_seen_before_a_kill_is_on_the_revm_chain_after(tmp_path: Path) -> None:
    """kill -9 of a writer process in mid-stream, three times; each block is one SQLite
    transaction, so every receipt it printed is there after and the file is sound."""
    path = tmp_path / "chain.sqlite"
    world = World.create(RevmChain(path))
    address = world.ledger.address
    world.chain.close()
    env = {**os.environ, "LOYALTY_CHAIN_ENGINE": "revm"}
    seen: list[dict[str, object]] = []
    start = 1_000
    for round_ in range(3):
        writer = subprocess.Popen(
            [sys.executable, "-m", "tests.chain.embedded_writer", str(path), address, str(start)],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert writer.stdout is not None
        deadline = time.monotonic() + 60
        got = 0
        while got < 5 + 7 * round_ and time.monotonic() < deadline:
            line = writer.stdout.readline()
            if line:
                seen.append(json.loads(line))
                got += 1
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        start += 10_000
        assert got >= 5, "the writer produced no receipts"

    assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone() == ("ok",)
    chain = EmbeddedChain(path)
    assert isinstance(chain, RevmChain)
    ledger = Ledger(chain.w3, address)
    for item in seen:
        receipt = chain.w3.eth.get_transaction_receipt(str(item["tx"]))
        assert receipt["status"] == 1
        assert ledger.partner_nonce_used(1, int(str(item["nonce"])))
    _, alice = member("alice")
    assert ledger.balance_of(alice) >= 10 * len(seen)
    # the chain goes on from where the last committed block left it
    head = chain.w3.eth.block_number
    assert [chain.w3.eth.get_block(n)["number"] for n in (head - 1, head)] == [head - 1, head]
    ledger.call(Sender(chain.w3, chain.dev_keys[0]), "setTransfersEnabled", True)
    assert chain.w3.eth.block_number == head + 1
    chain.close()
