"""`loyalty reindex`: the index dropped and rebuilt from the chain and the stored receipts."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

from gateway.chain.backends import AnvilNode
from gateway.cli import main
from gateway.core.config import get_settings
from tests.gateway.conftest import Gateway
from tests.gateway.history import History, drain, gateway_on, scripted_history


@pytest.fixture
def anvil() -> Iterator[AnvilNode]:
    node = AnvilNode()
    yield node
    node.close()


@pytest.fixture
def gw(
    anvil: AnvilNode, tmp_path: Path, database_url: str | None, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Gateway]:
    """A gateway on anvil, whose data directory and database the commands also open."""
    if database_url:
        monkeypatch.setenv("LOYALTY_DATABASE_URL", database_url)
    get_settings.cache_clear()
    with gateway_on(anvil.url, tmp_path / "data", database_url) as gateway:
        yield gateway
    get_settings.cache_clear()


def loyalty(gw: Gateway, *args: str) -> Result:
    where = ["--data-dir", str(gw.runtime.data_dir), "--network", gw.runtime.network]
    return CliRunner().invoke(main, [*args, *where])


def drop_index(gw: Gateway) -> None:
    with gw.runtime.writes.begin() as session:
        session.execute(sa.text("DROP TABLE operations"))
        session.execute(sa.text("DROP TABLE batches"))


def rows(gw: Gateway, table: str, order: str) -> list[dict[str, Any]]:
    """Every column but the gateway's own clock readings of when it wrote or saw a row."""
    with gw.runtime.sessions() as session:
        result = session.execute(sa.text(f"SELECT * FROM {table} ORDER BY {order}"))
        skip = {"updated_at", "mined_at"} | ({"created_at"} if table == "batches" else set())
        return [{k: v for k, v in row._mapping.items() if k not in skip} for row in result]


def answers(gw: Gateway, h: History) -> dict[str, Any]:
    """What partners and auditors read from the API."""
    out: dict[str, Any] = {}
    for label, operation_id in h.operations.items():
        key = h.grocer if label[0] in "GX" else h.cafe
        out[f"operation {label}"] = gw.get(f"/v1/operations/{operation_id}", key).json()
    for member in ("ana", "ben"):
        out[f"{member} seen by the cafe"] = gw.get(f"/v1/members/{member}/activity", h.cafe).json()
        first = gw.get(f"/v1/members/{member}/activity?limit=2", h.auditor).json()
        cursor = first["next_cursor"]
        out[f"{member} in pages"] = [first, gw.get(f"/v1/members/{member}/activity?cursor={cursor}", h.auditor).json()]
    for path in ("1/R-1", "1/R-2?kind=reversal", "2/G-1", "2/G-3", "2/X-1"):
        out[f"receipt {path}"] = gw.get(f"/v1/audit/receipts/{path}", h.auditor).json()
    out["settlement"] = gw.get("/v1/audit/settlement?from=2000-01-01&to=2100-01-01", h.auditor).json()
    return out


def test_a_dropped_index_is_rebuilt_and_answers_as_before(gw: Gateway) -> None:
    h = scripted_history(gw)
    before = answers(gw, h)
    assert before["operation G-3"]["status"] == "rejected" and before["operation V-1"]["status"] == "confirmed"
    assert len(before["ana seen by the cafe"]["items"]) == 1 and before["ana in pages"][0]["next_cursor"]
    operations, batches = rows(gw, "operations", "seq"), rows(gw, "batches", "id")

    drop_index(gw)
    result = loyalty(gw, "reindex")
    assert result.exit_code == 0, result.output
    assert (
        "7 stored receipts -> 6 confirmed, 0 mined (awaiting confirmations), 1 rejected, "
        "0 queued again (never on-chain); 4 batches" in result.output
    )
    assert "index rebuilt (its tables were missing)" in result.output

    assert answers(gw, h) == before
    # Row for row, down to the Merkle proofs of the earns and the signed transactions' bytes.
    assert rows(gw, "operations", "seq") == operations
    assert rows(gw, "batches", "id") == batches

    verify = loyalty(gw, "audit", "verify")
    assert verify.exit_code == 0, verify.output
    assert "7 operations, 7 stored receipts" in verify.output and "no discrepancy" in verify.output


def test_pending_operations_are_never_lost(gw: Gateway) -> None:
    cafe = gw.partner("Bean & Leaf")["api_key"]
    assert gw.post("/v1/members", cafe, {"member_id": "ana", "pin": "1234"}).status_code == 201

    def earn(receipt: str, amount: int) -> str:
        body = {"member_id": "ana", "receipt_id": receipt, "amount_minor": amount, "currency": "EUR"}
        response = gw.post("/v1/earn", cafe, body)
        assert response.status_code == 202, response.text
        return str(response.json()["operation_id"])

    first = earn("E-1", 10_000)
    earn("E-2", 2_000)
    drain(gw)
    waiting = earn("E-3", 500)

    # The index says E-3 is on its way: the reindex refuses and changes nothing.
    refused = loyalty(gw, "reindex")
    assert refused.exit_code == 1
    assert "1 operations are still on their way to the chain" in refused.output
    assert gw.get(f"/v1/operations/{waiting}", cafe).json()["status"] == "accepted"

    # Without an index there is nothing to ask: E-3 is in the stored receipts with no event,
    # so it goes back to the queue, and reaches the chain once.
    drop_index(gw)
    result = loyalty(gw, "reindex")
    assert result.exit_code == 0, result.output
    assert "2 confirmed" in result.output and "1 queued again (never on-chain)" in result.output
    assert gw.get(f"/v1/operations/{waiting}", cafe).json()["status"] == "accepted"
    drain(gw)
    assert gw.get(f"/v1/operations/{waiting}", cafe).json()["status"] == "confirmed"
    assert gw.get("/v1/members/ana", cafe).json()["balance"] == 100 + 20 + 5

    # A refund of an earn confirmed before the reindex: its batch id, month and Merkle proof
    # came back from the chain, and the contract checks that proof.
    refund = gw.post("/v1/reversals", cafe, {"receipt_id": "E-1", "points": 30, "reason": "returned"})
    assert refund.status_code == 202, refund.text
    drain(gw)
    assert gw.get(f"/v1/operations/{refund.json()['operation_id']}", cafe).json()["status"] == "confirmed"
    assert gw.get("/v1/members/ana", cafe).json()["balance"] == 95
    assert gw.get(f"/v1/operations/{first}", cafe).json()["status"] == "confirmed"

    verify = loyalty(gw, "audit", "verify")
    assert verify.exit_code == 0, verify.output


def test_reindex_needs_the_custody_data(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(main, ["reindex", "--data-dir", str(tmp_path / "empty")])
    assert result.exit_code == 2 and "the custody data is needed to rebuild the index" in result.output


def test_an_older_database_gets_its_receipts_from_its_operations(gw: Gateway) -> None:
    from alembic import command
    from alembic.config import Config

    from gateway.db.session import MIGRATIONS, database_url, migrate

    cafe = gw.partner("Bean & Leaf")["api_key"]
    assert gw.post("/v1/members", cafe, {"member_id": "ana", "pin": "1234"}).status_code == 201
    for i in range(3):
        body = {"member_id": "ana", "receipt_id": f"E-{i}", "amount_minor": 1000 + i, "currency": "EUR"}
        assert gw.post("/v1/earn", cafe, body).status_code == 202
    drain(gw)
    kept = rows(gw, "receipts", "seq")
    assert [r["receipt_id"] for r in kept] == ["E-0", "E-1", "E-2"]

    url = database_url(gw.runtime.data_dir, gw.runtime.settings.database_url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    gw.runtime.engine.dispose()
    command.downgrade(config, "0001")  # a database from before the receipts table
    migrate(url)
    assert rows(gw, "receipts", "seq") == kept


def test_campaign_earns_are_rebuilt_with_their_bonus_and_can_be_reversed_after(gw: Gateway) -> None:
    key = gw.partner()["api_key"]
    assert gw.post("/v1/members", key, {"member_id": "card-1", "pin": "1234"}).status_code == 201
    now = gw.runtime.chain.latest_timestamp()
    window = {"starts_at": datetime.fromtimestamp(now, UTC).isoformat()}
    window["ends_at"] = datetime.fromtimestamp(now + 86_400, UTC).isoformat()
    assert gw.post("/v1/campaigns", key, {**window, "multiplier_bps": 10_000, "budget": 15}).status_code == 201
    for receipt in ("C-1", "C-2"):
        body = {"member_id": "card-1", "receipt_id": receipt, "amount_minor": 1_000, "currency": "EUR"}
        assert gw.post("/v1/earn", key, {**body, "campaign_id": 1}).status_code == 202
    drain(gw)
    operations = rows(gw, "operations", "seq")
    assert [(o["campaign_id"], o["bonus"], o["points"]) for o in operations] == [(1, 10, 20), (1, 5, 15)]

    drop_index(gw)
    assert loyalty(gw, "reindex").exit_code == 0
    assert rows(gw, "operations", "seq") == operations
    reversal = gw.post("/v1/reversals", key, {"receipt_id": "C-2", "points": 15, "reason": "returned"})
    assert reversal.status_code == 202, reversal.text
    drain(gw)
    assert gw.get(f"/v1/operations/{reversal.json()['operation_id']}", key).json()["status"] == "confirmed"


def test_a_reindex_restores_what_debt_each_operation_moved(gw: Gateway) -> None:
    """(r2) A reversal's debt and an earn's repayment come back from the chain's DebtRecorded
    and DebtRepaid, row for row."""
    from tests.gateway.test_debt import _earn, _operation, _reverse, allow_debt, spent

    key = spent(gw)
    allow_debt(gw)
    reversal = _reverse(gw, key, "E-1/r", 120)
    gw.settle()
    _earn(gw, key, "E-2", 10_000)
    gw.settle()
    with gw.runtime.sessions() as session:
        earn = session.execute(sa.text("SELECT id FROM operations WHERE receipt_id = 'E-2'")).scalar_one()
    views = {op: _operation(gw, key, op) for op in (reversal, earn)}
    assert (views[reversal]["points_taken"], views[reversal]["debt"], views[earn]["debt_repaid"]) == (50, 70, 70)
    operations = rows(gw, "operations", "seq")

    drop_index(gw)
    result = loyalty(gw, "reindex")
    assert result.exit_code == 0, result.output
    assert rows(gw, "operations", "seq") == operations
    assert {op: _operation(gw, key, op) for op in views} == views
