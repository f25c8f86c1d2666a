"""The settlement statement matches hand-computed figures and balances to the unit: revision 1's
figures, and revision 2's (awards, refunds, per-partner prices, a point value change, the
operator's line) on a scripted history."""

from __future__ import annotations

from eth_utils import keccak

from gateway.audit.settlement import settlement
from gateway.audit.verify import verify_chain
from gateway.chain.backends import AnvilNode
from gateway.chain.campaigns import create_campaign
from gateway.chain.ledger import SignedAward
from gateway.points.rules import month_start
from partners.signing import AwardMessage, CampaignMessage, sign
from tests.support import DAY, FAR_DEADLINE, World, make_chain, member


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
        assert "breakage,,,,,,,330,660" in second.as_csv()
    finally:
        world.chain.close()


def _award(world: World, partner_id: int, member_address: str, points: int) -> None:
    message = AwardMessage(
        partner_id, member_address, points, 1, keccak(text=f"award-{world.nonce()}"), world.nonce(), FAR_DEADLINE
    )
    signed = SignedAward(message, sign(world.ledger.domain, message, world.partner_keys[partner_id]))
    assert not world.ledger.award_batch(world.relayer, [signed]).rejections()


def test_revision_2_statement_with_prices_awards_refunds_and_a_point_value_change() -> None:
    """Figures computed by hand (point value V = 2, then 3; partner 1 pays 3 per point it issues
    and is paid V per point redeemed at it; partner 2 pays V and is paid 1):

    month `start`: ana earns 100 at partner 1 (owes 300; spread +100); ben earns 300 and is
    awarded 40 at partner 2 (owes 680); ben redeems 50 at partner 1 (owed 100), 20 of them are
    refunded (owed -40); ana redeems 30 at partner 2 (owed 30; spread +30); partner 1 reverses
    10 of ana's earn (owes -30, credited at 3; spread -10).
      partner 1: issued 100, reversed 10, redeemed 50, refunded 20, net 60 points, 270 - 60 = 210
      partner 2: issued 340 (awarded 40), redeemed 30, net 310 points, 680 - 30 = 650
      liability 0 -> 370 points (0 -> 740 at V = 2); operator: spread 120; 740 + 120 = 860.
    month start + 12: V becomes 3 while 370 points are outstanding (revaluation 370); they expire
    at its end (breakage 370 points at V = 3: 1,110); month start + 13: chloe earns 20 at partner 1
    (owes 60 at its price 3 = V: no spread).
      liability 370 at 2 = 740 -> 20 at 3 = 60; operator 1,110 - 370 = 740; 60 - 740 + 740 = 60.
    """
    world = World.create(make_chain("embedded"))
    try:
        world.ledger.schedule(world.admin, "setPointValue", 2, b"EUR")  # notice period 0: at once
        world.ledger.schedule(world.admin, "setPartnerPrices", 1, 3, 0)
        world.ledger.schedule(world.admin, "setPartnerPrices", 2, 0, 1)
        start = world.month() + 1
        world.goto_month(start)
        ana_key, ana = member("ana")
        ben_key, ben = member("ben")
        _, chloe = member("chloe")
        records = world.earn(world.earn_op(1, ana, 10_000), world.earn_op(2, ben, 20_000)).earn_records()
        _award(world, 2, ben, 40)
        redemption = world.redeem(world.redeem_op(ben_key, 1, 50)).redemption_records()[0]
        assert not world.refund(world.refund_op(redemption, 20)).rejections()
        world.redeem(world.redeem_op(ana_key, 2, 30))
        assert not world.reverse(world.reverse_op(records[0], 10)).rejections()
        world.goto_month(start + 12)
        world.ledger.schedule(world.admin, "setPointValue", 3, b"EUR")
        world.goto_month(start + 13)  # everything from `start` expired at the end of start + 12
        world.earn(world.earn_op(1, chloe, 2_000))
        world.goto_month(start + 15)

        def period(first: int, last: int):  # type: ignore[no-untyped-def]
            return settlement(
                world.chain.w3,
                world.ledger,
                period_from=month_start(first),
                period_to=month_start(last),
                from_block=world.ledger.deployment_block,
            )

        first = period(start, start + 1)
        lines = {
            p.partner_id: (p.issued, p.awarded, p.reversed, p.redeemed, p.refunded, p.net_points, p.owes, p.owed)
            for p in first.partners
        }
        assert lines[1] == (100, 0, 10, 50, 20, 60, 270, 60)
        assert lines[2] == (340, 40, 0, 30, 0, 310, 680, 30)
        assert lines[3] == (0, 0, 0, 0, 0, 0, 0, 0)
        assert [p.net_amount for p in first.partners] == [210, 650, 0]
        assert [(p.issue_price, p.redemption_price) for p in first.partners][:2] == [(3, 0), (0, 1)]
        assert (first.liability_start_points, first.liability_end_points, first.breakage_points) == (0, 370, 0)
        assert (first.liability_start_amount, first.liability_end_amount) == (0, 740)
        assert (first.operator.spread, first.operator.breakage, first.operator.revaluation) == (120, 0, 0)
        assert first.balanced and first.net_amount == 860 == 740 - 0 + 120
        body = first.as_json()
        assert body["net_amount_total"] == 860 and body["operator"]["total"] == 120
        assert body["debt"] == {"recorded": 0, "repaid": 0, "start_points": 0, "end_points": 0}  # no debt policy

        second = period(start + 12, start + 14)
        assert [(p.issued, p.net_points, p.net_amount) for p in second.partners] == [(20, 20, 60), (0, 0, 0), (0, 0, 0)]
        assert (second.point_value_start, second.point_value) == (2, 3)
        assert (second.liability_start_points, second.liability_end_points, second.breakage_points) == (370, 20, 370)
        assert (second.operator.spread, second.operator.breakage, second.operator.revaluation) == (0, 1110, 370)
        assert second.operator.total == 740
        assert second.balanced and second.net_amount == 60 == 20 * 3 - 370 * 2 + 740
        assert "operator_total,,,,,,,,740" in second.as_csv()
    finally:
        world.chain.close()


def test_campaign_bonuses_are_a_line_of_their_own_in_the_issuing_partners_figures() -> None:
    """Figures by hand (point value 2, partner 1 pays V per point it issues): a campaign of
    partner 1 gives base x 50% + 5 per earn, budget 80. Ana spends 100 EUR (100 base points:
    bonus 55, 155 points), Ben spends 100 EUR (bonus 25, what is left of the budget: 125 points),
    Chloe spends 100 GBP at partner 2 (3 per 200 minor: 150 points, no campaign); partner 1
    reverses 30 of Ana's.
      partner 1: issued 280 (bonus 80), reversed 30, net 250 points, 560 - 60 = 500
      partner 2: issued 150 (bonus 0), net 150 points, 300
      liability 0 -> 400 points = 800 = 500 + 300."""
    world = World.create(make_chain("embedded"))
    try:
        world.ledger.schedule(world.admin, "setPointValue", 2, b"EUR")
        start = world.month() + 1
        world.goto_month(start)
        now = world.chain.latest_timestamp()
        terms = CampaignMessage(1, now, now + 20 * DAY, 5_000, 5, 0, 0b111, 80, world.nonce(), FAR_DEADLINE)
        signature = sign(world.ledger.domain, terms, world.partner_keys[1])
        cid = create_campaign(world.ledger, world.relayer, terms, signature)
        _, ana = member("ana")
        _, ben = member("ben")
        _, chloe = member("chloe")
        result = world.earn(
            world.earn_op(1, ana, 10_000, campaign_id=cid),
            world.earn_op(1, ben, 10_000, campaign_id=cid),
            world.earn_op(2, chloe, 10_000),
        )
        assert [(e.args["points"], e.args["bonus"]) for e in result.named("Earned")] == [(155, 55), (125, 25), (150, 0)]
        assert not world.reverse(world.reverse_op(result.earn_records()[0], 30)).rejections()
        world.goto_month(start + 1)
        statement = settlement(
            world.chain.w3,
            world.ledger,
            period_from=month_start(start),
            period_to=month_start(start + 1),
            from_block=world.ledger.deployment_block,
        )
        lines = {p.partner_id: (p.issued, p.bonus, p.reversed, p.net_points, p.net_amount) for p in statement.partners}
        assert lines[1] == (280, 80, 30, 250, 500)
        assert lines[2] == (150, 0, 0, 150, 300)
        assert (statement.liability_end_points, statement.liability_end_amount) == (400, 800)
        assert statement.balanced and statement.net_amount == 800
        assert "1,280,0,80,30,0,0,250,500" in statement.as_csv()
    finally:
        world.chain.close()


def test_revision_2_statement_with_member_debt_balances_net_of_what_is_owed() -> None:
    """Figures computed by hand. The point value V = 2 (3 from month start + 2); partner 1 pays 3
    per point it issues, partner 2 pays V and is paid V; the operator allows debt.

    month `start`: ana earns 300 at partner 1 (owes 900; spread +300), redeems 250 at partner 2
    (owed 500). Net points 300 - 250 = 50 = liability 0 -> 50; money 900 - 500 = 400 = 50 * 2 + 300.
    month start + 1: partner 1 reverses 120 of that earn; ana has 50: 50 taken, 70 become debt.
    Partner 1 is credited all 120 at 3 (owes -360; spread -120). Net points -120 = net liability
    (supply - debt) (0 - 70) - (50 - 0); money -360 = -70 * 2 - 50 * 2 - 120.
    month start + 2: V becomes 3 while ana owes 70 (the net liability -70 is revalued by -70:
    operator +70); ana earns 150 at partner 2 (owes 450 at V = 3): 70 repay the debt, 80 reach
    her balance. Net points 150 = (80 - 0) - (0 - 70); money 450 = 80 * 3 - (-70 * 2) + 70.
    """
    world = World.create(make_chain("embedded"))
    try:
        world.ledger.schedule(world.admin, "setPointValue", 2, b"EUR")  # notice period 0: at once
        world.ledger.schedule(world.admin, "setPartnerPrices", 1, 3, 0)
        world.ledger.schedule(world.admin, "setDebtPolicy", True)
        start = world.month() + 1
        world.goto_month(start)
        ana_key, ana = member("ana")
        record = world.earn(world.earn_op(1, ana, 30_000)).earn_records()[0]
        assert not world.redeem(world.redeem_op(ana_key, 2, 250)).rejections()
        world.goto_month(start + 1)
        result = world.reverse(world.reverse_op(record, 120))
        assert [e.name for e in result.events] == ["DebtRecorded", "Transfer", "Reversed"]
        assert world.ledger.debt_of(ana) == 70
        world.goto_month(start + 2)
        world.ledger.schedule(world.admin, "setPointValue", 3, b"EUR")
        assert world.earn(world.earn_op(2, ana, 10_000)).named("DebtRepaid")[0].args["points"] == 70
        assert (world.ledger.balance_of(ana), world.ledger.debt_of(ana)) == (80, 0)
        world.goto_month(start + 4)

        def period(first: int, last: int):  # type: ignore[no-untyped-def]
            return settlement(
                world.chain.w3,
                world.ledger,
                period_from=month_start(first),
                period_to=month_start(last),
                from_block=world.ledger.deployment_block,
            )

        def figures(st):  # type: ignore[no-untyped-def]
            return (
                [(p.issued, p.reversed, p.redeemed, p.net_points, p.net_amount) for p in st.partners[:2]],
                (st.liability_start_points, st.liability_end_points),
                (st.debt_recorded, st.debt_repaid, st.debt_start_points, st.debt_end_points),
                (st.operator.spread, st.operator.revaluation, st.operator.total),
            )

        first = period(start, start + 1)
        assert figures(first) == (
            [(300, 0, 0, 300, 900), (0, 0, 250, -250, -500)],
            (0, 50),
            (0, 0, 0, 0),
            (300, 0, 300),
        )
        assert first.balanced and first.net_amount == 400

        reversal = period(start + 1, start + 2)
        assert figures(reversal) == (
            [(0, 120, 0, -120, -360), (0, 0, 0, 0, 0)],
            (50, 0),
            (70, 0, 0, 70),
            (-120, 0, -120),
        )
        assert reversal.balanced and reversal.net_amount == -360 == (0 - 70) * 2 - (50 - 0) * 2 - 120

        repaid = period(start + 2, start + 3)
        assert figures(repaid) == (
            [(0, 0, 0, 0, 0), (150, 0, 0, 150, 450)],
            (0, 80),
            (0, 70, 70, 0),
            (0, -70, 70),
        )
        assert (repaid.point_value_start, repaid.point_value) == (2, 3)
        assert repaid.balanced and repaid.net_amount == 450 == 80 * 3 - (0 - 70) * 2 + 70

        both = period(start + 1, start + 3)  # recorded and repaid inside one period
        assert figures(both)[2] == (70, 70, 0, 0)
        assert both.balanced and both.net_amount == -360 + 450 == 80 * 3 - 50 * 2 - 120 + 70
        body = repaid.as_json()
        assert body["debt"] == {"recorded": 0, "repaid": 70, "start_points": 70, "end_points": 0}
        assert "debt_start,,,,,,,70," in repaid.as_csv()

        # The check is a real one: without the debt the same figures do not balance.
        repaid.debt_start_points = 0
        assert not repaid.balanced

        # `loyalty audit verify` on the same history: every balance and debt as the chain has them.
        report = verify_chain(world.chain.w3, world.ledger, from_block=world.ledger.deployment_block)
        assert report.ok, [str(d) for d in report.discrepancies]
        assert report.supply == world.ledger.total_supply() == 80
    finally:
        world.chain.close()
