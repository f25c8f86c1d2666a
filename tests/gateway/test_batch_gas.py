"""A batch that runs out of gas (issue 10, finding 4): halved until it fits, and one operation
that cannot fit even alone at the worst case's gas is refused instead of looping.

The budgets are shrunk for the test (an earn at steady state costs ~30k-50k gas): reaching a
real out-of-gas needs a member with ten years of buckets, which docs/contracts.md measures in
`scripts/bench_worst_gas.py`. The chain, the contract and the submitter are real.
"""

from __future__ import annotations

import pytest

from gateway.submitter import batches
from tests.gateway.conftest import Gateway


def _earns(gw: Gateway, key: str, n: int) -> list[str]:
    ids = []
    for i in range(n):
        r = gw.post(
            "/v1/earn", key, {"member_id": f"card-{i}", "receipt_id": f"R-{i}", "amount_minor": 1000, "currency": "EUR"}
        )
        assert r.status_code == 202, r.text
        ids.append(r.json()["operation_id"])
    return ids


def _statuses(gw: Gateway, key: str, ids: list[str]) -> list[tuple[str, str | None]]:
    ops = [gw.get(f"/v1/operations/{i}", key).json() for i in ids]
    return [(op["status"], (op.get("error") or {}).get("code")) for op in ops]


def _members(gw: Gateway, key: str, n: int) -> None:
    for i in range(n):
        assert gw.post("/v1/members", key, {"member_id": f"card-{i}", "pin": "1234"}).status_code == 201


def test_a_batch_out_of_gas_is_split_until_every_operation_goes_through(
    gw: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = gw.partner()["api_key"]
    _members(gw, key, 4)
    ids = _earns(gw, key, 4)
    # 4 earns under a limit of 150k + 4 x 1k: the batch reverts whole; halved to 2 it still
    # does; alone, each gets the worst case's limit and goes through.
    monkeypatch.setitem(batches.GAS_PER_OPERATION, batches.Kind.EARN, 1_000)
    monkeypatch.setattr(batches, "BATCH_OVERHEAD", 100_000)
    gw.settle(rounds=30)
    assert _statuses(gw, key, ids) == [("confirmed", None)] * 4
    with gw.runtime.sessions() as session:
        sizes = [row[0] for row in session.execute(batches.select(batches.Batch.size).order_by(batches.Batch.id))]
    assert sizes == [4, 2, 1, 1, 1, 1], sizes
    assert gw.get("/v1/members/card-3", key).json()["balance"] == 10


def test_an_operation_that_cannot_fit_alone_is_refused_and_the_rest_go_on(
    gw: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = gw.partner()["api_key"]
    _members(gw, key, 3)
    ids = _earns(gw, key, 3)
    # Even alone an earn gets too little gas: each is refused once, nothing loops.
    monkeypatch.setitem(batches.GAS_PER_OPERATION, batches.Kind.EARN, 1_000)
    monkeypatch.setattr(batches, "BATCH_OVERHEAD", 100_000)
    monkeypatch.setattr(batches, "batch_gas_limit", lambda kind, size: 60_000)
    gw.settle(rounds=30)
    assert _statuses(gw, key, ids) == [("rejected", "transaction_reverted")] * 3
    assert gw.get("/v1/members/card-0", key).json()["balance"] == 0
    # With real budgets again, new operations go through.
    monkeypatch.undo()
    more = gw.post(
        "/v1/earn", key, {"member_id": "card-0", "receipt_id": "R-9", "amount_minor": 1000, "currency": "EUR"}
    ).json()["operation_id"]
    gw.settle(rounds=10)
    assert _statuses(gw, key, [more]) == [("confirmed", None)]
