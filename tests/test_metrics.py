"""Programme metrics (SPEC section 5, r2): a scripted history whose every figure is worked out by
hand below, replayed from the chain's events alone, on the embedded chain and on anvil."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.audit.metrics import metrics_of, monthly_metrics
from gateway.audit.metrics_charts import flows_csv, metrics_csv, metrics_text, render_metrics_chart
from gateway.chain.events import fetch_events, timestamps
from gateway.chain.ledger import artifact
from gateway.core.money import money
from gateway.points.rules import month_start
from tests.support import DAY, World, member

EUR, GBP, JPY = 1, 2, 3  # 1 pt / 100 minor units; 3 pts / 200; 5 pts / minor unit


@pytest.fixture
def history(world: World) -> dict[str, object]:
    """The story, month by month (M0 is the month after the one the test starts in):

    M0   alice earns 100 at EUR (expires M0+12); bob earns 30 at GBP (M0+12)
    M1   alice earns 60 at GBP and bob 30 at GBP (both M1+12 = M0+13); carol 50 at EUR (M0+13)
         alice redeems 120 at JPY: her M0+12 bucket (100 EUR points), then 20 GBP points
    M2   bob redeems 40 at EUR: 30 GBP points of M0+12, then 10 of M0+13
         EUR reverses 20 of carol's 50
    M11  dave earns 50 at JPY (M0+23)
    M14  erin earns 10 at EUR (M0+26); by now M0+12 and M0+13 are over: alice's 40 GBP
         points, bob's 20 GBP points and carol's 30 EUR points expired (90 in all)
    """
    alice_key, alice = member("alice")
    bob_key, bob = member("bob")
    _, carol = member("carol")
    _, dave = member("dave")
    _, erin = member("erin")
    world.ledger.call(world.admin, "setPointValue", 2, b"EUR")
    world.next_month()  # the middle of a month: every month's story happens on its 15th
    m0 = world.month()
    world.earn(world.earn_op(EUR, alice, 10_000))
    world.earn(world.earn_op(GBP, bob, 2_000))
    world.goto_month(m0 + 1)
    world.earn(world.earn_op(GBP, alice, 4_000), world.earn_op(GBP, bob, 2_000))
    carol_earn = world.earn(world.earn_op(EUR, carol, 5_000)).earn_records()[0]
    world.redeem(world.redeem_op(alice_key, JPY, 120))
    world.goto_month(m0 + 2)
    world.redeem(world.redeem_op(bob_key, EUR, 40))
    world.reverse(world.reverse_op(carol_earn, 20))
    world.goto_month(m0 + 11)
    world.earn(world.earn_op(JPY, dave, 10))
    world.goto_month(m0 + 14)
    world.earn(world.earn_op(EUR, erin, 1_000))
    head = world.chain.w3.eth.block_number
    events = fetch_events(world.chain.w3, world.ledger, world.ledger.deployment_block, head)
    times = timestamps(world.chain.w3, {e.block_number for e in events} | {head})
    return {"m0": m0, "events": events, "times": times, "end": times[head] + 1, "balances": [alice, bob, carol]}


def test_coalition_figures_match_the_hand_computed_ones(world: World, history: dict) -> None:
    m0, end = history["m0"], history["end"]
    m = metrics_of(history["events"], history["times"], period_from=month_start(m0), period_to=end)
    assert (m.issued, m.redeemed, m.reversed, m.expired) == (330, 160, 20, 90)
    assert (m.members_active, m.new_members) == (5, 5)
    assert (m.purchasers, m.repeat_purchasers, m.repeat_purchase_rate) == (5, 2, 0.4)
    # alice and bob each bought once in M0 and once in M1, a calendar month apart (to the day).
    month_days = (month_start(m0 + 1) - month_start(m0)) / DAY
    assert m.average_days_between_purchases == pytest.approx(month_days, abs=0.01)
    assert m.redemption_rate == pytest.approx(160 / 330)
    assert m.breakage_rate == pytest.approx(90 / 330)
    # dave holds 50 with no earn for three months; erin just earned; the others hold nothing.
    assert (m.members_at_risk, m.liability_points) == (1, 60)
    assert world.ledger.total_supply() == 60
    assert m.flows == {(EUR, JPY): 100, (GBP, JPY): 20, (GBP, EUR): 40}
    as_json = m.as_json()
    assert as_json["liability_value_minor"] == 120
    assert {(f["earned_at"], f["redeemed_at"], f["value_minor"]) for f in as_json["flows"]} == {
        (EUR, JPY, 200),
        (GBP, JPY, 40),
        (GBP, EUR, 80),
    }


def test_partner_figures_count_only_the_partners_own_points(world: World, history: dict) -> None:
    m0, end, events, times = history["m0"], history["end"], history["events"], history["times"]
    gbp = metrics_of(events, times, period_from=month_start(m0), period_to=end, partner_id=GBP)
    assert (gbp.issued, gbp.redeemed, gbp.reversed, gbp.expired) == (120, 0, 0, 60)
    assert (gbp.members_active, gbp.new_members, gbp.purchasers, gbp.repeat_purchasers) == (2, 2, 2, 1)
    assert (gbp.members_at_risk, gbp.liability_points) == (0, 0)
    assert gbp.flows == {(GBP, JPY): 20, (GBP, EUR): 40}
    eur = metrics_of(events, times, period_from=month_start(m0), period_to=end, partner_id=EUR)
    assert (eur.issued, eur.redeemed, eur.reversed, eur.expired) == (160, 40, 20, 30)
    # alice, carol and erin earned there, bob redeemed there.
    assert (eur.members_active, eur.new_members, eur.purchasers, eur.repeat_purchasers) == (4, 3, 3, 0)
    assert (eur.members_at_risk, eur.liability_points) == (0, 10)
    assert eur.redemption_rate == pytest.approx(40 / 160)
    assert eur.flows == {(EUR, JPY): 100, (GBP, EUR): 40}


def test_a_period_counts_only_what_happened_inside_it(world: World, history: dict) -> None:
    m0, events, times = history["m0"], history["events"], history["times"]
    m1 = metrics_of(events, times, period_from=month_start(m0 + 1), period_to=month_start(m0 + 2))
    assert (m1.issued, m1.redeemed, m1.reversed, m1.expired) == (140, 120, 0, 0)
    # carol is the only one whose first earn falls in M1.
    assert (m1.members_active, m1.new_members, m1.purchasers, m1.repeat_purchasers) == (3, 1, 3, 0)
    # At the end of M1 every holder earned within 60 days; live: alice 40, bob 60, carol 50.
    assert (m1.members_at_risk, m1.liability_points) == (0, 150)
    assert m1.flows == {(EUR, JPY): 100, (GBP, JPY): 20}
    rows = monthly_metrics(events, times, first_month=m0, last_month=m0 + 14)
    assert [r.issued for _, r in rows] == [130, 140, 0] + [0] * 8 + [50, 0, 0, 10]
    assert [r.expired for _, r in rows][12:] == [0, 90, 0]
    assert rows[1][1].as_json() == m1.as_json()


def _standalone_script(tmp_path: Path) -> Path:
    """The metrics_check.py block of docs/auditors.md, as an auditor would copy it."""
    text = (Path(__file__).parent.parent / "docs" / "auditors.md").read_text()
    marker = "<!-- metrics_check.py:"
    block = text[text.index(marker) :].split("```python\n", 1)[1].split("\n```", 1)[0]
    script = tmp_path / "metrics_check.py"
    script.write_text(block + "\n")
    return script


@pytest.mark.parametrize("partner", [None, EUR, GBP])
def test_the_standalone_script_of_the_auditors_page_gives_the_same_figures(
    world: World, history: dict, tmp_path: Path, partner: int | None
) -> None:
    if world.chain.name != "anvil":
        pytest.skip("the script reads a JSON-RPC endpoint: run on anvil")
    ledger_json = tmp_path / "ledger.json"
    ledger_json.write_text(
        json.dumps(
            {
                "chain_id": world.ledger.chain_id,
                "address": world.ledger.address,
                "deployment_block": world.ledger.deployment_block,
                "abi": artifact()["abi"],
            }
        )
    )
    m0, end = history["m0"], history["end"]
    period = [str(month_start(m0)), str(end)] + ([str(partner)] if partner else [])
    url = world.chain.url  # type: ignore[attr-defined]
    out = subprocess.run(
        [sys.executable, str(_standalone_script(tmp_path)), url, str(ledger_json), *period],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        cwd=tmp_path,
    )
    theirs = json.loads(out.stdout)
    ours = metrics_of(
        history["events"], history["times"], period_from=month_start(m0), period_to=end, partner_id=partner
    ).as_json()
    assert theirs == {k: ours[k] for k in theirs}
    assert theirs["points_issued"] == {None: 330, EUR: 160, GBP: 120}[partner]


def test_chart_and_csv_show_the_figures(world: World, history: dict, tmp_path: Path) -> None:
    m0, end, events, times = history["m0"], history["end"], history["events"], history["times"]
    total = metrics_of(events, times, period_from=month_start(m0), period_to=end)
    rows = monthly_metrics(events, times, first_month=m0, last_month=m0 + 14)
    png = render_metrics_chart(rows, total, names={EUR: "Bean & Leaf", GBP: "FreshMart", JPY: "Sora Air"})
    assert png.startswith(b"\x89PNG") and len(png) > 20_000
    artifacts = Path(__file__).parent.parent / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    (artifacts / f"metrics-{world.chain.name}.png").write_bytes(png)
    table = metrics_csv(rows, total).splitlines()
    assert table[0].startswith("period,members_active,new_members,repeat_purchase_rate")
    assert table[-1].split(",")[:2] == ["total", "5"] and len(table) == 17
    assert flows_csv(total).splitlines()[1:] == ["1,3,100,200", "2,1,40,80", "2,3,20,40"]


def test_terminal_table_names_partners_and_shows_money_in_currency_units(world: World, history: dict) -> None:
    m0, end, events, times = history["m0"], history["end"], history["events"], history["times"]
    total = metrics_of(events, times, period_from=month_start(m0), period_to=end)
    text = metrics_text(total, names={EUR: "Bean & Leaf", GBP: "FreshMart", JPY: "Sora Air"})
    assert "members at churn risk (no earn for 60 days)" in text
    assert "repeat-purchase rate                         40.0%" in text
    assert "liability, value                             1.20 EUR" in text  # 60 points at 2 cents
    assert "FreshMart    Bean & Leaf      40  0.80 EUR" in text
    assert money(972, "EUR") == "9.72 EUR" and money(972, "JPY") == "972 JPY" and money(-1, "KWD") == "-0.001 KWD"
