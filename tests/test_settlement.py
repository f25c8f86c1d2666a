"""The settlement statement matches hand-computed figures and balances to the unit."""

from __future__ import annotations

from gateway.audit.settlement import settlement
from gateway.chain.backends import AnvilNode
from gateway.points.rules import month_start
from tests.support import World, member


def test_statement_of_two_periods_matches_hand_computed_figures() -> None:
    world = World.create(AnvilNode())
    try:
        world.ledger.call(world.admin, "setPointValue", 2, b"EUR")  # 1 point = 0.02 EUR
        start = world.month() + 1
        world.goto_month(start)
        ana_key, ana = member("ana")
        ben_key, ben = member("ben")
        _, chloe = member("chloe")
        records = world.earn(world.earn_op(1, ana, 10_000), world.earn_op(2, ben, 20_000)).earn_records()
        world.redeem(world.redeem_op(ben_key, 1, 50))  # at partner 1
        world.reverse(world.reverse_op(records[0], 20))
        world.goto_month(start + 13)  # everything from `start` expired at the end of start + 12
        world.earn(world.earn_op(2, chloe, 2_000))
        world.goto_month(start + 15)
        deployed = world.ledger.deployment_block

        first = settlement(
            world.chain.w3,
            world.ledger,
            period_from=month_start(start),
            period_to=month_start(start + 1),
            from_block=deployed,
        )
        lines = {p.partner_id: (p.issued, p.reversed, p.redeemed, p.net_points, p.net_amount) for p in first.partners}
        assert lines[1] == (100, 20, 50, 30, 60)  # owes 100 - 20 issued, is owed 50 redeemed at it
        assert lines[2] == (300, 0, 0, 300, 600)
        assert (first.liability_start_points, first.liability_end_points, first.breakage_points) == (0, 330, 0)
        assert first.balanced and first.as_json()["net_amount_total"] == 660

        second = settlement(
            world.chain.w3,
            world.ledger,
            period_from=month_start(start + 12),
            period_to=month_start(start + 14),
            from_block=deployed,
        )
        lines = {p.partner_id: (p.issued, p.net_points) for p in second.partners}
        assert lines[1] == (0, 0) and lines[2] == (30, 30)
        assert (second.liability_start_points, second.liability_end_points, second.breakage_points) == (330, 30, 330)
        assert second.balanced  # 30 = (30 - 330) + 330
        assert second.as_json()["breakage"]["amount"] == 660
        assert "breakage,,,,330,660" in second.as_csv()
    finally:
        world.chain.close()
