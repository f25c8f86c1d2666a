"""Programme metrics with revision 2's operations: a refund gives back the points its
redemption consumed (redemption rate net of refunds, flows undone), a member who migrates
keeps its history (new, active, liability); awards are issued points, not purchases; campaign
results per campaign; member debt stays out of liability (`debt_outstanding`). Figures
computed by hand."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from eth_utils import keccak

from gateway.audit.metrics import metrics_of
from gateway.audit.metrics_charts import campaigns_csv, metrics_csv, metrics_text
from gateway.chain.campaigns import create_campaign
from gateway.chain.events import fetch_events, timestamps
from gateway.chain.ledger import AWARD_REASONS, SignedAward, artifact
from gateway.points.rules import month_start
from partners.signing import AwardMessage, CampaignMessage, MigrateMessage, sign
from tests.support import DAY, FAR_DEADLINE, World, member
from tests.test_metrics import _standalone_script

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


def _award(world: World, partner_id: int, member_address: str, points: int) -> None:
    message = AwardMessage(
        partner_id,
        member_address,
        points,
        AWARD_REASONS["goodwill"],
        keccak(text=f"metrics-award-{world.nonce()}"),
        world.nonce(),
        FAR_DEADLINE,
    )
    op = SignedAward(message, sign(world.ledger.domain, message, world.partner_keys[partner_id]))
    assert not world.ledger.award_batch(world.relayer, [op]).rejections()


def _campaign(world: World, partner_id: int, **kw: int) -> int:
    now = world.chain.latest_timestamp()
    values = {"start": now, "end": now + 20 * DAY, "bonus_bps": 0, "fixed_bonus": 0, "min_spend": 0}
    values |= {"tier_mask": 0b111, "budget": 1_000, "nonce": world.nonce(), "deadline": FAR_DEADLINE} | kw
    message = CampaignMessage(partner_id=partner_id, **values)
    signature = sign(world.ledger.domain, message, world.partner_keys[partner_id])
    return create_campaign(world.ledger, world.relayer, message, signature)


def history_with_awards_campaigns_and_debt(world: World) -> tuple[str, str, str, int, int, int]:
    """M0 (EUR: 1 point per 100 minor units; GBP: 3 per 200):
    - c1 (EUR, double points from a spend of 5,000): ana earns 10,000 (100 + 100 bonus), bob
      3,000 (30, below the minimum: no bonus), ana 6,000 (60 + 60);
    - c2 (GBP, 5 points fixed): ana earns 4,000 at GBP (60 + 5);
    - GBP awards bob 40; bob redeems 50 at GBP (20 left);
    - debt allowed: EUR reverses bob's 30-point earn: 20 taken, 10 become his debt;
    - carl earns 10,000 at EUR (100), redeems all 100 at GBP; EUR reverses 40 of it: all debt;
    - GBP awards bob 25: 10 pay his debt, 15 reach his balance.
    Returns ana, bob, carl, the first month and the campaign ids."""
    _, ana = member("m-ana")
    bob_key, bob = member("m-bob")
    carl_key, carl = member("m-carl")
    world.next_month()
    m0 = world.month()
    c1 = _campaign(world, EUR, bonus_bps=10_000, min_spend=5_000)
    c2 = _campaign(world, GBP, fixed_bonus=5)
    world.earn(world.earn_op(EUR, ana, 10_000, campaign_id=c1))
    bob_earn = world.earn(world.earn_op(EUR, bob, 3_000, campaign_id=c1)).earn_records()[0]
    world.earn(world.earn_op(EUR, ana, 6_000, campaign_id=c1))
    world.earn(world.earn_op(GBP, ana, 4_000, campaign_id=c2))
    _award(world, GBP, bob, 40)
    world.redeem(world.redeem_op(bob_key, GBP, 50))
    change = world.ledger.schedule(world.admin, "setDebtPolicy", True)
    assert world.ledger.change(change)["state"] == "applied"
    assert not world.reverse(world.reverse_op(bob_earn, 30)).rejections()
    carl_earn = world.earn(world.earn_op(EUR, carl, 10_000)).earn_records()[0]
    world.redeem(world.redeem_op(carl_key, GBP, 100))
    assert not world.reverse(world.reverse_op(carl_earn, 40)).rejections()
    _award(world, GBP, bob, 25)
    assert (world.ledger.debt_of(bob), world.ledger.debt_of(carl)) == (0, 40)
    return ana, bob, carl, m0, c1, c2


def test_awards_campaigns_and_debt_in_the_figures(world: World) -> None:
    ana, bob, carl, m0, c1, c2 = history_with_awards_campaigns_and_debt(world)
    head = world.chain.w3.eth.block_number
    events = fetch_events(world.chain.w3, world.ledger, world.ledger.deployment_block, head)
    assert [e.name for e in events].count("DebtRepaid") == 1
    times = timestamps(world.chain.w3, {e.block_number for e in events} | {head})
    period = {"period_from": month_start(m0), "period_to": month_start(m0 + 1)}

    m = metrics_of(events, times, **period)
    # issued: earns 200 + 30 + 120 + 65 + 100, awards 40 + 25 (the 10 that paid bob's debt too)
    assert (m.issued, m.bonus, m.redeemed, m.reversed) == (580, 165, 150, 70)
    assert (m.purchasers, m.repeat_purchasers, m.members_active, m.new_members) == (3, 1, 3, 3)
    assert m.debt_outstanding == 40 == world.ledger.total_debt()  # carl's; bob's was paid
    balances = [world.ledger.balance_of(a) for a in (ana, bob, carl)]
    assert balances == [385, 15, 0]
    assert m.liability_points == 400 == sum(balances)  # = 580 - 150 - 70 + 40 of debt
    assert [c.as_json() for c in m.campaigns] == [
        {"campaign_id": c1, "partner_id": EUR, "bonus_points": 160, "purchases": 2, "earns_named": 3,
         "spend_minor": 16_000, "members_reached": 1},
        {"campaign_id": c2, "partner_id": GBP, "bonus_points": 5, "purchases": 1, "earns_named": 1,
         "spend_minor": 4_000, "members_reached": 1},
    ]  # fmt: skip
    assert m.as_json()["debt_outstanding"] == 40
    text = metrics_text(m, names={EUR: "Bean & Leaf", GBP: "FreshMart"})  # `loyalty audit report`'s metrics.txt
    lines = {line.split("  ")[0].strip(): line.split() for line in text.splitlines()}
    assert lines["member debt (not in liability)"][-1] == "40"
    assert lines[f"#{c1}"] == [f"#{c1}", "Bean", "&", "Leaf", "160", "2", "3", "16000", "1"]
    assert lines[f"#{c2}"] == [f"#{c2}", "FreshMart", "5", "1", "1", "4000", "1"]
    assert metrics_csv([], m).splitlines()[0].endswith(",liability_value_minor,debt_outstanding")
    # `loyalty audit report`'s campaigns.csv, at a point value of 2 units
    m.point_value, m.currency = 2, "EUR"
    assert campaigns_csv(m).splitlines() == [
        "campaign_id,partner_id,bonus_points,purchases,earns_named,spend_minor,members_reached,bonus_value_minor_EUR",
        f"{c1},{EUR},160,2,3,16000,1,320",
        f"{c2},{GBP},5,1,1,4000,1,10",
    ]

    eur = metrics_of(events, times, partner_id=EUR, **period)
    assert (eur.issued, eur.bonus, eur.reversed, eur.debt_outstanding) == (450, 160, 70, 40)
    assert [c.campaign_id for c in eur.campaigns] == [c1]
    gbp = metrics_of(events, times, partner_id=GBP, **period)
    assert (gbp.issued, gbp.bonus, gbp.redeemed, gbp.debt_outstanding) == (130, 5, 150, 0)
    assert [(c.campaign_id, c.bonus, c.purchases) for c in gbp.campaigns] == [(c2, 5, 1)]
    assert gbp.purchasers == 1  # awards are not purchases: bob's two awards count only as issued


@pytest.mark.parametrize("partner", [None, EUR, GBP])
def test_the_auditors_script_gives_the_same_figures_on_an_r2_history(
    world: World, tmp_path: Path, partner: int | None
) -> None:
    """docs/auditors.md's metrics_check.py on awards, campaigns, debt (recorded and repaid),
    a refund and a migration: every figure it prints equals the project's."""
    if world.chain.name != "anvil":
        pytest.skip("the script reads a JSON-RPC endpoint: run on anvil")
    ana, _, _, m0, c1, _ = history_with_awards_campaigns_and_debt(world)
    ana_key, _ = member("m-ana")
    _, wallet = member("m-ana-wallet")
    redemption = world.redeem(world.redeem_op(ana_key, GBP, 100)).redemption_records()[0]
    assert not world.refund(world.refund_op(redemption, 30)).rejections()
    move = MigrateMessage(ana, wallet, world.nonce(), FAR_DEADLINE)
    world.ledger.migrate(world.relayer, move, sign(world.ledger.domain, move, ana_key))
    world.earn(world.earn_op(EUR, wallet, 6_000, campaign_id=c1))  # 60 + 60
    head = world.chain.w3.eth.block_number
    events = fetch_events(world.chain.w3, world.ledger, world.ledger.deployment_block, head)
    times = timestamps(world.chain.w3, {e.block_number for e in events} | {head})
    period = [month_start(m0), times[head] + 1]
    ledger_json = tmp_path / "ledger.json"
    ledger = {"chain_id": world.ledger.chain_id, "address": world.ledger.address, "abi": artifact()["abi"]}
    ledger_json.write_text(json.dumps({**ledger, "deployment_block": world.ledger.deployment_block}))
    out = subprocess.run(
        [sys.executable, str(_standalone_script(tmp_path)), world.chain.url, str(ledger_json)]  # type: ignore[attr-defined]
        + [str(x) for x in period]
        + ([str(partner)] if partner else []),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        cwd=tmp_path,
    )
    theirs = json.loads(out.stdout)
    ours = metrics_of(events, times, period_from=period[0], period_to=period[1], partner_id=partner).as_json()
    assert set(theirs) <= set(ours) and {"campaigns", "debt_outstanding", "points_bonus"} <= set(theirs)
    assert theirs == {k: ours[k] for k in theirs}
    # issued: 580 + 120 (the wallet's campaign earn); redeemed: 150 + 100 - 30 refunded
    expected = {None: (700, 220, 225, 40), EUR: (570, 0, 220, 40), GBP: (130, 220, 5, 0)}[partner]
    keys = ("points_issued", "points_redeemed", "points_bonus", "debt_outstanding")
    assert tuple(theirs[k] for k in keys) == expected
    if partner is None:
        assert theirs["liability_points"] == world.ledger.total_supply() == 400 - 100 + 30 + 120
        assert theirs["members_active"] == 3  # ana and her wallet are one member


def test_the_auditors_audit_check_finds_no_discrepancy_on_an_r2_history(world: World, tmp_path: Path) -> None:
    """docs/auditors.md's audit_check.py on awards, campaigns, debt, a refund and a migration:
    balances, debts, supply and partner totals agree with the contract's views."""
    if world.chain.name != "anvil":
        pytest.skip("the script reads a JSON-RPC endpoint: run on anvil")
    ana, bob, carl, _, _, _ = history_with_awards_campaigns_and_debt(world)
    ana_key, _ = member("m-ana")
    _, wallet = member("m-ana-wallet")
    redemption = world.redeem(world.redeem_op(ana_key, GBP, 100)).redemption_records()[0]
    assert not world.refund(world.refund_op(redemption, 30)).rejections()
    move = MigrateMessage(ana, wallet, world.nonce(), FAR_DEADLINE)
    world.ledger.migrate(world.relayer, move, sign(world.ledger.domain, move, ana_key))
    text = (Path(__file__).parent.parent / "docs" / "auditors.md").read_text()
    block = text[text.index("### A standalone script") :].split("```python\n", 1)[1].split("\n```", 1)[0]
    script = tmp_path / "audit_check.py"
    script.write_text(block + "\n")
    ledger_json = tmp_path / "ledger.json"
    ledger = {"chain_id": world.ledger.chain_id, "address": world.ledger.address, "abi": artifact()["abi"]}
    ledger_json.write_text(json.dumps({**ledger, "deployment_block": world.ledger.deployment_block}))
    url = world.chain.url  # type: ignore[attr-defined]
    out = subprocess.run(
        [sys.executable, str(script), url, str(ledger_json)], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert out.returncode == 0 and out.stdout.endswith("no discrepancy\n"), out.stdout + out.stderr
    # issued 580 (earns 515 + awards 65) - redeemed 250 + refunded 30 - reversed 70 + debt 40 = supply 330
    flat = "issued 580 - redeemed 250 + refunded 30 - reversed 70 - expired 0 + debt 40 = 330 = supply 330"
    assert flat in out.stdout
    assert f"{carl}: replayed 0 (debt 40), balanceOf 0 (debtOf 40)" in out.stdout
    assert f"{bob}: replayed 15 (debt 0)" in out.stdout and f"{wallet}: replayed 315 (debt 0)" in out.stdout
