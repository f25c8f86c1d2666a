"""The operator's full cycle through the API on a real anvil node with a 3-day notice period:
a new tier table scheduled, visible in the programme, refused before its time, applied after
time travel past the notice period (`evm_increaseTime`), and the next earn's 202 quote is the
points the ledger then issues under the new table."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.api.main import create_app
from gateway.app.bootstrap import open_runtime
from gateway.chain.backends import AnvilNode
from tests.conftest import _anvil_available
from tests.gateway.conftest import Gateway
from tests.gateway.test_console_writes import NOTICE, settings
from tests.support import anvil_required

NEW_TIERS = [{"threshold": 0, "multiplier_bps": 10_000}, {"threshold": 150, "multiplier_bps": 25_000}]


@pytest.fixture
def on_anvil(tmp_path: Path) -> Iterator[tuple[AnvilNode, Gateway]]:
    if not _anvil_available():
        if anvil_required():
            pytest.fail("anvil is missing in CI")
        pytest.skip("anvil not installed (run scripts/bootstrap)")
    node = AnvilNode()
    runtime = open_runtime(settings(None), data_dir=tmp_path / "data", network=node.url, log=False)
    try:
        app = create_app(runtime, run_submitter=False)
        admin_key = (tmp_path / "data" / "admin.key").read_text().strip()
        with TestClient(app) as client:
            yield node, Gateway(runtime, client, app.state.submitter, admin_key)
    finally:
        runtime.close()
        node.close()


def increase_time(node: AnvilNode, seconds: int) -> None:
    node._call("evm_increaseTime", seconds)
    node.mine()


def earn(gw: Gateway, key: str, receipt: str, amount: int) -> dict[str, Any]:
    body = {"member_id": "m-1", "receipt_id": receipt, "amount_minor": amount, "currency": "EUR"}
    answer = gw.post("/v1/earn", key, body)
    assert answer.status_code == 202, answer.text
    quoted: dict[str, Any] = answer.json()
    # The submitter's rounds until the node has mined it (a loaded anvil may take a few rounds).
    deadline = time.monotonic() + 60
    while True:
        gw.settle()
        confirmed = gw.get(f"/v1/operations/{quoted['operation_id']}", key).json()
        if confirmed["status"] in ("confirmed", "rejected") or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert confirmed["status"] == "confirmed", confirmed
    quoted["confirmed_points"] = confirmed["points"]
    return quoted


def test_a_tier_table_under_notice_from_schedule_to_the_next_earn(on_anvil: tuple[AnvilNode, Gateway]) -> None:
    node, gw = on_anvil
    admin = gw.admin_key
    bean = gw.partner()
    key = bean["api_key"]
    assert gw.post("/v1/members", key, {"member_id": "m-1", "pin": "1234"}).status_code == 201
    increase_time(node, NOTICE + 1)  # a new partner issues after the notice period
    first = earn(gw, key, "R-1", 20_000)  # 200 points at the base tier: qualifying 200
    assert first["points"] == first["confirmed_points"] == 200

    scheduled = gw.post("/v1/programme/changes", admin, {"tiers": NEW_TIERS})
    assert scheduled.status_code == 202, scheduled.text
    change = scheduled.json()["changes"][0]
    assert (change["state"], change["terms"]) == ("pending", {"tiers": NEW_TIERS})

    programme = gw.get("/v1/programme", key).json()  # a partner sees what is coming too
    pending = {c["change_id"]: c for c in programme["changes"]}[change["change_id"]]
    assert pending["state"] == "pending" and NOTICE - 30 <= pending["seconds_left"] <= NOTICE
    assert [t["multiplier_bps"] for t in programme["tiers"]] == [10_000, 12_500, 20_000]  # still the old table
    before = earn(gw, key, "R-2", 1_000)  # old table: tier 0 (Silver needs 500)
    assert before["points"] == before["confirmed_points"] == 10

    refused = gw.post(f"/v1/programme/changes/{change['change_id']}/apply", admin, None)
    assert (refused.status_code, refused.json()["error"]["code"]) == (409, "change_not_due")
    increase_time(node, NOTICE)
    applied = gw.post(f"/v1/programme/changes/{change['change_id']}/apply", admin, None)
    assert applied.status_code == 200 and applied.json()["state"] == "applied", applied.text
    assert [t["multiplier_bps"] for t in gw.get("/v1/programme", key).json()["tiers"]] == [10_000, 25_000]

    after = earn(gw, key, "R-3", 1_000)  # 210 qualifying points: tier 1 of the new table, 2.5x
    assert after["points"] == after["confirmed_points"] == 25
