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
from gateway.core.errors import LoyaltyError
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


def test_demo_tells_the_story_through_the_gateway_and_audits_clean(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    result = CliRunner().invoke(main, ["demo", "--data-dir", str(data), "--port", "9123"])
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())  # rich wraps lines at the terminal width
    # The links go where `loyalty serve --port 9123` (bash scripts/run --port 9123) shows the pages.
    assert "http://127.0.0.1:9123/members/view?q=ana" in out and "http://127.0.0.1:9123/docs" in out
    assert ":8000" not in out and f"loyalty serve --data-dir {data.resolve()} --port 9123" in out
    assert "tier Green" in out and "tier Silver" in out and "earns 12 points (x1.25)" in out
    assert "a wrong PIN for chloe: 403 invalid_pin" in out
    assert "422 invalid_signature" in out and "InvalidSignature(" in out  # the gateway, then the contract
    assert "points earned in the first month expired" in out
    assert "no discrepancy" in out and "balances" in out and "DOES NOT BALANCE" not in out
    assert "-8.91 EUR" in out and "-891 EUR" not in out  # money in currency units, never minor units
    # Revision 2's chapters: an award, a return of goods paid with points, a change under notice.
    assert "Bean & Leaf awards ana 50 points for goodwill" in out and "40 points come back" in out
    assert "applying it before its time: 409 change_not_due" in out and "(applied)" in out
    assert "quoted 15, confirmed 15 points under the new table" in out
    assert "quoted 16 (bonus 8), confirmed 16 (bonus 8)" in out  # a campaign earn
    assert "so 6 are taken and 228 become her debt" in out and "228 pay her debt first" in out
    assert "debt recorded / repaid: 228 / 228 points" in out
    assert "Programme metrics" in out and "redemption rate" in out and "Flow: points earned" in out
    assert {p.name for p in (data / "report").iterdir()} >= {"chart.png", "settlement.csv", "verify.txt", "README.txt"}
    # What it left verifies again from the data directory alone, and chloe's points are on-chain.
    figures = CliRunner().invoke(main, ["audit", "metrics", "--data-dir", str(data), "--json"])
    assert figures.exit_code == 0, figures.output
    metrics = json.loads(figures.output)
    statement = json.loads((data / "report" / "settlement.json").read_text())
    # Metrics count redemptions net of refunds (goods brought back); the statement lists both.
    assert metrics["points_redeemed"] == sum(p["redeemed"] - p["refunded"] for p in statement["partners"])
    assert metrics["members_active"] == 3 and metrics["flows"]
    by_partner = CliRunner().invoke(main, ["audit", "metrics", "--data-dir", str(data), "--partner", "2", "--csv"])
    assert by_partner.exit_code == 0 and by_partner.output.startswith("period,members_active"), by_partner.output
    verified = CliRunner().invoke(main, ["audit", "verify", "--data-dir", str(data)])
    assert verified.exit_code == 0 and "no discrepancy" in verified.output, verified.output
    chloe = next(line.split()[1] for line in result.output.splitlines() if line.startswith("chloe: 0x"))
    balance = CliRunner().invoke(main, ["balance", chloe.rstrip(","), "--data-dir", str(data)])
    assert balance.exit_code == 0 and "772 points" in balance.output, balance.output


def test_partner_add_onboards_on_chain_and_prints_a_working_key(tmp_path: Path) -> None:
    data = tmp_path / "data"
    signer = "0x" + "11" * 20
    command = ["partner", "add", "--name", "Own Key", "--currency", "gbp", "--points", "3", "--per", "200"]
    result = CliRunner().invoke(main, [*command, "--allowance", "5000", "--signer", signer, "--data-dir", str(data)])
    assert result.exit_code == 0, result.output
    key = " ".join(result.output.split()).split("stored only hashed): ")[1].split()[0]
    refused = CliRunner().invoke(main, [*command, "--allowance", "-1", "--data-dir", str(data)])
    assert refused.exit_code == 2 and "--allowance" in refused.output

    from gateway.accounts.keys import authenticate
    from gateway.app.bootstrap import open_runtime
    from gateway.core.config import get_settings

    runtime = open_runtime(get_settings(), data_dir=data, log=False)
    try:
        on_chain = runtime.ledger.partner(1)
        with runtime.sessions() as session:
            caller = authenticate(session, key)
    finally:
        runtime.close()
    assert (on_chain["signer"].lower(), on_chain["currency"], on_chain["allowance"]) == (signer, "GBP", 5000)
    assert (on_chain["rate_points"], on_chain["rate_per_minor_units"]) == (3, 200)
    assert (caller.role, caller.partner_id) == ("partner", 1)


def test_a_wrong_key_encryption_key_is_refused_at_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    command = ["partner", "add", "--currency", "EUR", "--points", "1", "--per", "100", "--allowance", "10"]
    assert CliRunner().invoke(main, [*command, "--name", "A", "--data-dir", str(data)]).exit_code == 0
    monkeypatch.setenv("LOYALTY_KEY_ENCRYPTION_KEY", "another-key-of-more-than-32-characters")
    from gateway.core.config import get_settings

    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(main, [*command, "--name", "B", "--data-dir", str(data)])
    finally:
        monkeypatch.delenv("LOYALTY_KEY_ENCRYPTION_KEY")
        get_settings.cache_clear()
    assert result.exit_code != 0
    assert isinstance(result.exception, LoyaltyError) and "does not open the keys" in str(result.exception)


def test_submit_refuses_the_embedded_chain_before_opening_anything(tmp_path: Path) -> None:
    # The embedded chain's files belong to the gateway process that runs it.
    result = CliRunner().invoke(main, ["submit", "--network", "embedded", "--data-dir", str(tmp_path / "data")])
    assert result.exit_code == 2 and "the embedded chain lives inside the gateway's process" in result.output
    assert not (tmp_path / "data").exists()
