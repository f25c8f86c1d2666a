"""The `loyalty` commands that exist so far, against a real anvil node."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway.chain.backends import AnvilNode
from gateway.chain.ledger import Ledger, Sender
from gateway.cli import main
from tests.support import member


@pytest.fixture(scope="module")
def anvil() -> Iterator[AnvilNode]:
    node = AnvilNode()
    yield node
    node.close()


def test_deploy_writes_a_record_and_balance_reads_the_chain(anvil: AnvilNode, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["deploy", "--network", anvil.url, "--data-dir", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.output)
    assert record["chain_id"] == 31337
    assert record == json.loads((tmp_path / "deployment.json").read_text())
    assert any(item.get("name") == "earnBatch" for item in record["abi"])
    ledger = Ledger(anvil.w3, record["address"])
    assert ledger.view("decimals") == 0
    assert ledger.view("tiers")[1][1] == 12_500  # the policy from hardhat-free-config.toml was applied

    _, alice = member("alice")
    admin = Sender(anvil.w3, anvil.dev_keys[0])
    from partners.signing import EarnMessage, address_of, sign
    from tests.support import key_for

    pkey = key_for("cli-partner")
    pid = ledger.add_partner(
        admin, signer=address_of(pkey), rate_points=1, rate_per_minor_units=100, currency="EUR", allowance=10**6
    )
    message = EarnMessage(pid, alice, 4_200, b"\x01" * 32, 1, 2**40)
    from gateway.chain.ledger import SignedEarn

    ledger.earn_batch(admin, [SignedEarn(message, sign(ledger.domain, message, pkey))])
    result = runner.invoke(main, ["balance", alice, "--data-dir", str(tmp_path), "--network", anvil.url])
    assert result.exit_code == 0, result.output
    assert f"{alice}: 42 points at block" in result.output

    result = runner.invoke(main, ["audit", "verify", "--data-dir", str(tmp_path), "--network", anvil.url])
    assert result.exit_code == 0, result.output
    assert "1 operations, 1 members, supply 42" in result.output and "no discrepancy" in result.output


def test_unknown_network_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["deploy", "--network", "nowhere", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "unknown network 'nowhere'" in result.output


def test_demo_tells_the_story_and_balances() -> None:
    result = CliRunner().invoke(main, ["demo", "--fast"])
    assert result.exit_code == 0, result.output
    assert "rejected by the contract" in result.output and "InvalidSignature" in result.output
    assert "balances" in result.output and "DOES NOT BALANCE" not in result.output
