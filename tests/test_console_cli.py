"""`loyalty partner|programme|pause|unpause`: the operator console on the command line, through a
gateway's admin API (a real HTTP server) and signed with a key file against anvil."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
from click.testing import CliRunner, Result

from gateway.api.main import create_app
from gateway.app.bootstrap import open_runtime
from gateway.chain.backends import AnvilNode
from gateway.chain.ledger import Ledger
from gateway.cli import main
from partners.signing import address_of
from tests.gateway.live import uvicorn_thread
from tests.gateway.test_console_writes import settings
from tests.support import key_for
from tests.test_operator_cli import node  # noqa: F401 - the anvil fixture


def run(args: list[str]) -> Result:
    return CliRunner().invoke(main, args)


def test_the_console_through_a_gateways_api(tmp_path: Path) -> None:
    runtime = open_runtime(settings(None), data_dir=tmp_path / "data", log=False)
    try:
        with uvicorn_thread(create_app(runtime, run_submitter=False)) as url:
            key_file = tmp_path / "data" / "admin.key"
            via = ["--gateway", url, "--api-key-file", str(key_file)]
            admin = {"Authorization": f"Bearer {key_file.read_text().strip()}"}
            body = {"name": "Grocer", "currency": "EUR", "earn_rate": {"points": 1, "per_minor_units": 100},
                    "allowance": 1000}  # fmt: skip
            assert httpx.post(f"{url}/v1/partners", json=body, headers=admin).status_code == 201

            listed = run(["partner", "list", *via])
            assert listed.exit_code == 0, listed.output
            assert "Grocer" in listed.output and "1,000" in listed.output
            updated = run(["partner", "update", "1", "--points", "2", "--per", "100", *via])
            assert updated.exit_code == 0 and "(rate of partner 1) scheduled: takes effect from" in updated.output
            changed = run(["programme", "change", "--tiers", "0:10000,100:20000", *via])
            assert changed.exit_code == 0 and "(tiers) scheduled" in changed.output, changed.output
            change_id = re.search(r"change (\d+) \(tiers\)", changed.output).group(1)  # type: ignore[union-attr]
            shown = run(["programme", "show", *via])
            assert shown.exit_code == 0 and "pending" in shown.output and re.search(r"in [23]d", shown.output)
            assert "cancelled" in run(["programme", "cancel", change_id, *via]).output
            debt = run(["programme", "change", "--debt", "allow", *via])  # (r2) the debt policy
            assert debt.exit_code == 0 and "(debt_policy) scheduled" in debt.output, debt.output
            assert "debt rejected" in run(["programme", "show", *via]).output  # until the notice is over
            assert run(["programme", "change", "--debt", "maybe", *via]).exit_code == 2
            assert [tuple(t) for t in runtime.ledger.view("tiers")][1] != (100, 20_000)
            assert "may issue 1,005 more points" in run(["partner", "allowance", "1", "--add", "5", *via]).output
            assert run(["partner", "suspend", "1", *via]).exit_code == 0 and not runtime.ledger.partner(1)["active"]
            assert run(["partner", "resume", "1", *via]).exit_code == 0 and runtime.ledger.partner(1)["active"]
            assert run(["pause", *via]).exit_code == 0 and runtime.ledger.view("paused")
            assert run(["unpause", *via]).exit_code == 0 and not runtime.ledger.view("paused")

            missing = run(["programme", "cancel", "99", *via])
            assert missing.exit_code != 0 and "404 unknown_change" in missing.output
            assert "Traceback" not in missing.output
            early = run(["programme", "apply", "3", *via])
            assert early.exit_code != 0 and "409 change_not_due" in early.output
            assert run(["pause", "--gateway", url]).exit_code == 2  # the key file is required
    finally:
        runtime.close()


def test_the_console_signed_with_a_key_file(node: tuple[AnvilNode, Ledger, list[str]]) -> None:  # noqa: F811
    anvil, ledger, op = node
    signed = op[1:]  # --rpc URL --ledger ADDRESS --key-file FILE
    signer = address_of(key_for("console-cli-partner"))
    added = run([*op, "add-partner", "--signer", signer, "--currency", "EUR", "--points", "1", "--per", "100",
                 "--allowance", "5000"])  # fmt: skip
    assert added.exit_code == 0, added.output

    assert "5,000" in run(["partner", "list", *signed]).output
    update = run(["partner", "update", "1", "--issue-price", "3", "--redemption-price", "2", *signed])
    assert update.exit_code == 0 and "takes effect from" in update.output, update.output
    assert run(["partner", "allowance", "1", "--add", "250", *signed]).exit_code == 0
    assert ledger.partner(1)["allowance"] == 5250
    rotation = run(["partner", "rotate-signer", "1", address_of(key_for("lost-key")), *signed])
    assert rotation.exit_code == 0 and "takes effect from" in rotation.output
    tiers = run(["programme", "change", "--tiers", "0:10000,900:11000", "--expiry", "6", *signed])
    assert tiers.exit_code == 0 and tiers.output.count("takes effect from") == 2, tiers.output
    shown = run(["programme", "show", *signed])
    assert shown.exit_code == 0 and shown.output.count("pending") == 4, shown.output
    change_id = int(tiers.output.split()[1])
    assert run(["programme", "cancel", str(change_id), *signed]).exit_code == 0
    early = run(["programme", "apply", str(change_id + 1), *signed])
    assert early.exit_code != 0 and "ChangeNotDue" in early.output
    debt = run(["programme", "change", "--debt", "allow", *signed])
    assert debt.exit_code == 0 and "takes effect from" in debt.output, debt.output
    assert ledger.view("changeOf", change_id + 2)[0] == 7  # setDebtPolicy's kind, pending
    assert run(["pause", *signed]).exit_code == 0 and ledger.view("paused")
    assert run(["unpause", *signed]).exit_code == 0 and not ledger.view("paused")
    both = run(["pause", "--gateway", "http://127.0.0.1:9", "--api-key-file", signed[-1], *signed])
    assert both.exit_code == 2 and "not both" in both.output
