"""Programme metrics with revision 2's operations: a refund gives back the points its
redemption consumed (redemption rate net of refunds, flows undone), and a member who migrates
keeps its history (new, active, liability). Figures computed by hand."""

from __future__ import annotations

from gateway.audit.metrics import metrics_of
from gateway.chain.events import fetch_events, timestamps
from gateway.points.rules import month_start
from partners.signing import MigrateMessage, sign
from tests.support import FAR_DEADLINE, World, member

EUR, GBP, JPY = 1, 2, 3


def test_refunds_and_migrations_in_the_figures(world: World) -> None:
    """M0: ana earns 100 at EUR and 60 at GBP (one expiry month: EUR's lot first); she redeems
    130 at JPY (100 EUR + 30 GBP points); JPY refunds 50 of it (the last taken first: 30 GBP
    and 20 EUR points come back); she moves to her wallet, which earns 10 more at EUR."""
    ana_key, ana = member("m-ana")
    _, wallet = member("m-wallet")
    world.next_month()
    m0 = world.month()
    world.earn(world.earn_op(EUR, ana, 10_000), world.earn_op(GBP, ana, 4_000))
    redemption = world.redeem(world.redeem_op(ana_key, JPY, 130)).redemption_records()[0]
    assert not world.refund(world.refund_op(redemption, 50)).rejections()
    move = MigrateMessage(ana, wallet, world.nonce(), FAR_DEADLINE)
    world.ledger.migrate(world.relayer, move, sign(world.ledger.domain, move, ana_key))
    world.earn(world.earn_op(EUR, wallet, 1_000))
    head = world.chain.w3.eth.block_number
    events = fetch_events(world.chain.w3, world.ledger, world.ledger.deployment_block, head)
    times = timestamps(world.chain.w3, {e.block_number for e in events} | {head})
    period = {"period_from": month_start(m0), "period_to": month_start(m0 + 1)}

    m = metrics_of(events, times, **period)
    assert (m.issued, m.redeemed) == (170, 80)  # 130 redeemed, 50 of them refunded
    assert m.redemption_rate == 80 / 170
    assert m.flows == {(EUR, JPY): 80, (GBP, JPY): 0}  # 100 - 20 EUR, 30 - 30 GBP
    assert m.liability_points == 170 - 80 == world.ledger.balance_of(wallet)
    assert (m.members_active, m.new_members) == (1, 1)  # the wallet is ana: one member, one history
    jpy = metrics_of(events, times, partner_id=JPY, **period)
    assert (jpy.redeemed, jpy.issued) == (80, 0)
    eur = metrics_of(events, times, partner_id=EUR, **period)
    assert eur.liability_points == 100 - 80 + 10  # its points left with the wallet
