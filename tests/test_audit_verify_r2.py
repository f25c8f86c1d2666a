"""The audit replay knows revision 2: awards, assigned tiers, migrations (and reversals that
follow them), scheduled changes and prices. A true history verifies with no discrepancy; a
wrong rule is still caught."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from eth_utils import keccak

from gateway.audit.verify import Replay, verify_chain
from gateway.chain.backends import AnvilNode
from gateway.chain.ledger import SignedAward
from gateway.points.rules import PointsModel
from partners.signing import AwardMessage, MigrateMessage, sign
from tests.support import DAY, FAR_DEADLINE, World, member

GOLD = 2


def _award(world: World, partner_id: int, address: str, points: int, reason: int) -> SignedAward:
    message = AwardMessage(
        partner_id, address, points, reason, keccak(text=f"award-{world.nonce()}"), world.nonce(), FAR_DEADLINE
    )
    return SignedAward(message, sign(world.ledger.domain, message, world.partner_keys[partner_id]))


@pytest.fixture(scope="module")
def history() -> Iterator[World]:
    world = World.create(AnvilNode(), notice_period=3 * DAY)
    start = world.month() + 1
    world.goto_month(start)  # the partners' notice is over
    ana_key, ana = member("r2-ana")
    _, ben = member("r2-ben")
    wallet_key, wallet = member("r2-wallet")
    records = world.earn(world.earn_op(1, ana, 30_000), world.earn_op(2, ben, 9_999)).earn_records()
    world.ledger.award_batch(world.relayer, [_award(world, 1, ana, 250, 2), _award(world, 3, ben, 40, 4)])
    # A paid status: Gold until next month; the next earn is multiplied by Gold's rate.
    world.ledger.assign_tier(world.admin, ana, GOLD, world.chain.latest_timestamp() + 20 * DAY)
    world.earn(world.earn_op(1, ana, 10_000))
    # A programme change under notice, applied once due; and a partner's own prices.
    rate = world.ledger.schedule(world.admin, "setPartnerRate", 2, 3, 100)
    prices = world.ledger.schedule(world.admin, "setPartnerPrices", 1, 2, 1)
    world.chain.travel_to(world.chain.latest_timestamp() + 3 * DAY + 1)
    world.ledger.apply_change(world.relayer, rate)
    world.ledger.apply_change(world.relayer, prices)
    world.earn(world.earn_op(2, ben, 10_000))  # at the new rate
    # Ana moves to her wallet; the partner then reverses her first earn there.
    move = MigrateMessage(ana, wallet, world.nonce(), FAR_DEADLINE)
    world.ledger.migrate(world.relayer, move, sign(world.ledger.domain, move, ana_key))
    assert not world.reverse(world.reverse_op(records[0], 100)).rejections()
    world.goto_month(start + 1)
    world.earn(world.earn_op(1, wallet, 5_000))  # the assignment has ended
    redemption = world.redeem(world.redeem_op(wallet_key, 2, 30)).redemption_records()[0]
    assert not world.refund(world.refund_op(redemption, 12)).rejections()  # goods returned
    yield world
    world.chain.close()


def test_a_revision_2_history_verifies_without_discrepancy(history: World) -> None:
    report = verify_chain(history.chain.w3, history.ledger, from_block=history.ledger.deployment_block)
    assert report.ok, [str(d) for d in report.discrepancies]
    assert report.supply == history.ledger.total_supply() > 0
    assert report.operations == 10  # 5 earns, 2 awards, 1 reversal, 1 redemption, 1 refund


def test_a_replay_blind_to_revision_2_is_caught(history: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """The checks can fail: a replay that skips awards or refunds, or ignores an assigned tier,
    disagrees with the chain and says where."""
    monkeypatch.setattr(Replay, "_awarded", lambda self, e, month: None)
    report = verify_chain(history.chain.w3, history.ledger, from_block=history.ledger.deployment_block)
    assert any(d.kind.startswith("balance of") for d in report.discrepancies), [str(d) for d in report.discrepancies]
    monkeypatch.undo()
    monkeypatch.setattr(Replay, "_refunded", lambda self, e, month: None)
    report = verify_chain(history.chain.w3, history.ledger, from_block=history.ledger.deployment_block)
    assert any(d.kind.startswith("balance of") for d in report.discrepancies), [str(d) for d in report.discrepancies]
    monkeypatch.undo()
    monkeypatch.setattr(PointsModel, "assign_tier", lambda self, member, tier, until: None)
    report = verify_chain(history.chain.w3, history.ledger, from_block=history.ledger.deployment_block)
    assert [d.kind for d in report.discrepancies][:1] == ["points of an earn"], [str(d) for d in report.discrepancies]
