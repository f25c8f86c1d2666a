"""`loyalty audit verify` replays the chain with the rules and finds any disagreement."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gateway.audit.verify import verify_chain
from gateway.chain.backends import AnvilNode
from gateway.chain.ledger import Sender
from gateway.ledger.rules import PointsModel
from tests.support import World, member


@pytest.fixture(scope="module")
def history() -> Iterator[World]:
    """Several partners, members and months: tiers, refunds, transfers, expiry."""
    world = World.create(AnvilNode())
    start = world.month() + 1
    world.goto_month(start)
    keys = {name: member(name) for name in ("ana", "ben", "chloe")}
    records = world.earn(
        world.earn_op(1, keys["ana"][1], 60_000),
        world.earn_op(2, keys["ben"][1], 9_999),
        world.earn_op(3, keys["chloe"][1], 40),
    ).earn_records()
    world.earn(world.earn_op(1, keys["ana"][1], 10_000))  # Silver now: x1.25
    world.redeem(world.redeem_op(keys["ben"][0], 1, 20))
    world.goto_month(start + 3)
    world.reverse(world.reverse_op(records[0], 100))
    world.ledger.call(world.admin, "setTransfersEnabled", True)
    world.chain.fund(keys["chloe"][1], 10**18)
    world.ledger.call(Sender(world.chain.w3, keys["chloe"][0]), "transfer", keys["ana"][1], 50)
    world.goto_month(start + 8)
    world.earn(world.earn_op(2, keys["chloe"][1], 20_000))
    world.goto_month(start + 14)  # the first month's points have expired
    world.ledger.expire(world.relayer, [k[1] for k in keys.values()])
    world.redeem(world.redeem_op(keys["chloe"][0], 3, 10))
    yield world
    world.chain.close()


def test_a_true_history_verifies_without_discrepancy(history: World) -> None:
    report = verify_chain(history.chain.w3, history.ledger, from_block=history.ledger.deployment_block)
    assert report.ok, [str(d) for d in report.discrepancies]
    assert report.operations == 8 and report.members == 3
    assert report.supply == history.ledger.total_supply() > 0


def test_a_wrong_rule_is_caught_and_named(history: World, monkeypatch: pytest.MonkeyPatch) -> None:
    original = PointsModel.points_for
    monkeypatch.setattr(PointsModel, "points_for", lambda self, p, s, m: original(self, p, s, m) + 1)
    report = verify_chain(history.chain.w3, history.ledger, from_block=history.ledger.deployment_block)
    kinds = {d.kind.split(" of ")[0] for d in report.discrepancies}
    assert "points" in kinds  # each earn's recomputed points differ from the event's
    assert any("Earned" in str(d) or "points of an earn" in str(d) for d in report.discrepancies)
    assert not report.ok
