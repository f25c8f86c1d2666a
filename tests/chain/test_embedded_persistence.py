"""The embedded chain kept in a SQLite file survives a restart and a kill -9."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from gateway.chain.backends import EmbeddedChain
from gateway.chain.ledger import Ledger, Sender
from gateway.core.config import REPO_ROOT
from tests.support import World, member


def test_state_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "chain.sqlite"
    world = World.create(EmbeddedChain(path))
    _, alice = member("alice")
    world.earn(world.earn_op(1, alice, 12_300))
    head, address = world.chain.w3.eth.block_number, world.ledger.address
    world.chain.close()

    chain = EmbeddedChain(path)
    ledger = Ledger(chain.w3, address)
    assert chain.w3.eth.block_number == head
    assert ledger.balance_of(alice) == 123
    ledger.call(Sender(chain.w3, chain.dev_keys[0]), "setTransfersEnabled", True)
    assert chain.w3.eth.block_number == head + 1
    chain.close()


def test_every_receipt_seen_before_a_kill_is_on_the_chain_after(tmp_path: Path) -> None:
    path = tmp_path / "chain.sqlite"
    world = World.create(EmbeddedChain(path))
    address = world.ledger.address
    world.chain.close()
    seen: list[dict[str, object]] = []
    start = 1_000
    for round_ in range(3):
        writer = subprocess.Popen(
            [sys.executable, "-m", "tests.chain.embedded_writer", str(path), address, str(start)],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert writer.stdout is not None
        deadline = time.monotonic() + 60
        got = 0
        while got < 5 + 3 * round_ and time.monotonic() < deadline:
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
    ledger = Ledger(chain.w3, address)
    for item in seen:
        receipt = chain.w3.eth.get_transaction_receipt(str(item["tx"]))
        assert receipt["status"] == 1
        assert ledger.partner_nonce_used(1, int(str(item["nonce"])))
    _, alice = member("alice")
    assert ledger.balance_of(alice) >= 10 * len(seen)  # each earn gave 10 points
    chain.close()
