"""`loyalty operator`: the operator's chores signed with a key file against a JSON-RPC URL, with
no gateway and no data directory (SPEC section 3: the gateway need not hold the operator key).
On a real anvil node, with a 3-day notice period."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from gateway.chain.backends import AnvilNode
from gateway.chain.ledger import Ledger, Sender
from gateway.cli import main
from partners.signing import address_of
from tests.conftest import _anvil_available
from tests.support import DAY, TEST_COALITION, anvil_required, key_for

NOTICE = 3 * DAY


@pytest.fixture
def node(tmp_path: Path) -> Iterator[tuple[AnvilNode, Ledger, list[str]]]:
    if not _anvil_available():
        if anvil_required():
            pytest.fail("anvil is missing in CI")
        pytest.skip("anvil not installed (run scripts/bootstrap)")
    anvil = AnvilNode()
    try:
        operator_key = anvil.dev_keys[0]
        ledger = Ledger.deploy(Sender(anvil.w3, operator_key), TEST_COALITION, notice_period=NOTICE)
        key_file = tmp_path / "operator.key"
        key_file.write_text(operator_key + "\n")
        yield anvil, ledger, ["operator", "--rpc", anvil.url, "--ledger", ledger.address, "--key-file", str(key_file)]
    finally:
        anvil.close()


def run(args: list[str], env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, args, env=env)


def test_the_operator_runs_the_programme_from_a_key_file(node: tuple[AnvilNode, Ledger, list[str]]) -> None:
    anvil, ledger, op = node
    signer = address_of(key_for("op-cli-partner"))
    added = run([*op, "add-partner", "--signer", signer, "--currency", "EUR", "--points", "1", "--per", "100",
                 "--allowance", "5000"])  # fmt: skip
    assert added.exit_code == 0, added.output
    assert "partner 1 added" in added.output and "may issue from" in added.output
    assert ledger.partner(1)["signer"] == signer

    assert run([*op, "allowance", "1", "9000"]).exit_code == 0
    assert ledger.partner(1)["allowance"] == 9000

    scheduled = run([*op, "schedule", "rate", "1", "--points", "3", "--per", "200"])
    assert scheduled.exit_code == 0, scheduled.output
    assert "change" in scheduled.output and "takes effect from" in scheduled.output
    change_id = int(scheduled.output.split()[1])
    listed = run([*op, "changes"])
    assert "rate" in listed.output and "pending" in listed.output, listed.output
    assert re.search(r"in [23]d \d+h", listed.output), listed.output

    early = run([*op, "apply", str(change_id)])
    assert early.exit_code != 0 and "ChangeNotDue" in early.output and "Traceback" not in early.output
    anvil.travel_to(anvil.latest_timestamp() + NOTICE + 1)
    assert run([*op, "apply", str(change_id)]).exit_code == 0
    assert (ledger.partner(1)["rate_points"], ledger.partner(1)["rate_per_minor_units"]) == (3, 200)

    tiers = run([*op, "schedule", "tiers", "0:10000,500:12500"])
    assert tiers.exit_code == 0
    cancel = int(tiers.output.split()[1])
    assert run([*op, "cancel", str(cancel)]).exit_code == 0
    assert "cancelled" in run([*op, "changes", "--all"]).output

    assert run([*op, "suspend", "1"]).exit_code == 0 and not ledger.partner(1)["active"]
    assert run([*op, "resume", "1"]).exit_code == 0 and ledger.partner(1)["active"]
    assert run([*op, "pause"]).exit_code == 0 and ledger.view("paused")
    assert run([*op, "unpause"]).exit_code == 0 and not ledger.view("paused")
    member = address_of(key_for("op-cli-member"))
    assert run([*op, "assign-tier", member, "1", "--days", "30"]).exit_code == 0
    assert ledger.assigned_tier(member)[0] == 1

    shown = run([*op, "show"])
    assert shown.exit_code == 0
    assert "9,000" in shown.output and "3/200 EUR" in shown.output and "Silver" not in shown.output


def test_refusals_are_clear_and_change_nothing(node: tuple[AnvilNode, Ledger, list[str]], tmp_path: Path) -> None:
    anvil, ledger, op = node
    stranger = tmp_path / "stranger.key"
    stranger.write_text(anvil.dev_keys[3])
    as_stranger = [*op[:-1], str(stranger)]
    refused = run([*as_stranger, "pause"])
    assert refused.exit_code != 0 and "AccessControlUnauthorizedAccount" in refused.output
    assert not ledger.view("paused")

    bad = run([*op, "add-partner", "--signer", "0xAbC0000000000000000000000000000000000001", "--currency", "EUR",
               "--points", "1", "--per", "100", "--allowance", "1"])  # fmt: skip
    assert bad.exit_code == 2 and "EIP-55" in bad.output
    assert int(ledger.view("partnerCount")) == 0
    assert run([*op, "schedule", "tiers", "0-10000"]).exit_code == 2
    for content in ["not a key", "zz" * 32]:
        broken = tmp_path / "broken.key"
        broken.write_text(content)
        refused_key = run([*op[:-1], str(broken), "pause"])
        assert refused_key.exit_code == 2 and "32-byte hex" in refused_key.output, refused_key.output
    changes = int(ledger.view("changeCount"))
    negative = run([*op, "schedule", "tiers", "0:10000,-5:3"])
    assert negative.exit_code == 2 and "whole numbers" in negative.output and "Traceback" not in negative.output
    assert run([*op, "schedule", "tiers", f"0:10000,{2**64}:3"]).exit_code == 2
    assert not ledger.view("paused") and int(ledger.view("changeCount")) == changes  # nothing scheduled
    silent = run(["operator", "--rpc", "http://127.0.0.1:9", "--ledger", ledger.address, "show"])
    assert silent.exit_code == 1 and "does not answer" in silent.output and "Traceback" not in silent.output
    assert "no ledger" in run(["operator", "--data-dir", str(tmp_path / "empty"), "show"]).output
