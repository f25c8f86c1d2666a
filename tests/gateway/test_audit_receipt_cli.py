"""`loyalty audit receipt`: a stored receipt or a receipt file, proved against the chain."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

from gateway.chain.backends import AnvilNode
from gateway.cli import main
from gateway.core.config import get_settings
from tests.gateway.conftest import Gateway
from tests.gateway.history import History, gateway_on, scripted_history


@pytest.fixture
def anvil() -> Iterator[AnvilNode]:
    node = AnvilNode()  # one per test: the history moves the chain's clock 14 months on
    yield node
    node.close()


@pytest.fixture
def story(
    anvil: AnvilNode, tmp_path: Path, database_url: str | None, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Gateway, History]]:
    if database_url:
        monkeypatch.setenv("LOYALTY_DATABASE_URL", database_url)  # what the CLI reads
    get_settings.cache_clear()
    with gateway_on(anvil.url, tmp_path / "data", database_url) as gw:
        yield gw, scripted_history(gw)
    get_settings.cache_clear()


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, ["audit", "receipt", *args])


def test_a_stored_receipt_is_proved_like_the_api_proves_it(story: tuple[Gateway, History], tmp_path: Path) -> None:
    gw, h = story
    where = ["--data-dir", str(tmp_path / "data"), "--network", gw.runtime.network]
    result = cli("1", "R-1", *where)
    assert result.exit_code == 0, result.output
    assert "matches: true" in result.output and "Earned in tx 0x" in result.output

    as_json = cli("1", "R-1", *where, "--json")
    assert as_json.exit_code == 0, as_json.output
    proof = json.loads(as_json.output)
    assert proof == gw.get("/v1/audit/receipts/1/R-1", h.auditor).json()
    op = gw.get(f"/v1/operations/{h.operations['R-1']}", h.cafe).json()
    event = proof["event"]
    assert (event["tx_hash"], event["block_number"], event["log_index"]) == (
        op["tx_hash"],
        op["block_number"],
        op["log_index"],
    )
    assert event["block_hash"] == op["block_hash"] and event["receipt_ref"] == proof["receipt_hash"]
    assert proof["receipt"]["amount_minor"] == 1250

    refund = json.loads(cli("1", "R-2", *where, "--kind", "reversal", "--json").output)
    assert (refund["kind"], refund["event"]["name"], refund["event"]["points"], refund["matches"]) == (
        "reversal",
        "Reversed",
        10,
        True,
    )

    # The contract rejected G-3: nothing carries it as an operation, so it does not match.
    rejected = cli("2", "G-3", *where)
    assert rejected.exit_code == 1
    assert "OperationRejected (PartnerSuspended" in rejected.output and "matches: false" in rejected.output

    missing = cli("1", "nope", *where)
    assert missing.exit_code == 1 and "no receipt nope of partner 1" in missing.output


def test_a_tampered_stored_receipt_does_not_match(story: tuple[Gateway, History], tmp_path: Path) -> None:
    gw, _ = story
    with gw.runtime.writes.begin() as session:
        session.execute(
            sa.text("UPDATE receipts SET receipt_doc = replace(receipt_doc, '4000', '9000') WHERE receipt_id = 'G-1'")
        )
    result = cli("2", "G-1", "--data-dir", str(tmp_path / "data"), "--network", gw.runtime.network, "--json")
    assert result.exit_code == 1
    proof = json.loads(result.output)
    assert proof["matches"] is False and proof["event"]["name"] == "Earned"
    assert proof["event"]["receipt_ref"] != proof["receipt_hash"]


def test_a_receipt_file_is_found_on_the_chain_without_a_database(
    story: tuple[Gateway, History], tmp_path: Path
) -> None:
    gw, h = story
    stored = gw.get("/v1/audit/receipts/1/R-2", h.auditor).json()
    (tmp_path / "receipt.json").write_text(json.dumps(stored["receipt"], indent=4))
    nowhere = tmp_path / "empty"  # no deployment.json, no database: only the chain
    nowhere.mkdir()
    chain_only = [
        "--data-dir",
        str(nowhere),
        "--network",
        gw.runtime.network,
        "--address",
        gw.runtime.ledger.address,
        "--from-block",
        str(gw.runtime.ledger.deployment_block),
    ]
    result = cli("--file", str(tmp_path / "receipt.json"), *chain_only, "--json")
    assert result.exit_code == 0, result.output
    proof = json.loads(result.output)
    assert proof["matches"] is True and proof["receipt_hash"] == stored["receipt_hash"]
    assert proof["event"] == stored["event"]

    # A saved proof works as the file too, and the human form says where the event is.
    (tmp_path / "proof.json").write_text(json.dumps(stored))
    human = cli("--file", str(tmp_path / "proof.json"), *chain_only)
    assert human.exit_code == 0 and f"block {stored['event']['block_number']}" in human.output

    forged = {**stored["receipt"], "amount_minor": stored["receipt"]["amount_minor"] + 100}
    (tmp_path / "forged.json").write_text(json.dumps(forged))
    result = cli("--file", str(tmp_path / "forged.json"), *chain_only)
    assert result.exit_code == 1
    assert "none carries this hash" in result.output and "matches: false" in result.output

    (tmp_path / "junk.json").write_text("[1, 2")
    assert cli("--file", str(tmp_path / "junk.json"), *chain_only).exit_code == 1


def test_usage_needs_a_receipt_or_a_file() -> None:
    result = cli("1")
    assert result.exit_code == 2 and "give PARTNER_ID and RECEIPT_ID, or --file FILE" in result.output
