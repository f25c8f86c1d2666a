"""The liability report: monthly figures match hand-computed ones and the chain's supply, the
chart is a real picture, and the auditor's folder has every file (also through the CLI)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from gateway.audit.report import History, load_history, monthly, outstanding, render_chart, write_folder
from gateway.audit.verify import verify_chain
from gateway.chain.backends import AnvilNode, EmbeddedChain
from gateway.cli import main
from gateway.points.rules import month_label, month_start
from tests.conftest import _anvil_available
from tests.support import World, anvil_required, member


@dataclass
class Scripted:
    world: World
    start: int  # the month of the first purchases
    supply_at_month_end: dict[int, int]  # month -> totalSupply read right after it ended
    history: History


def run_history(world: World) -> Scripted:
    """Fifteen months: purchases, a redemption, a refund, quiet months, expiry and a sweep.

    Partner 1 gives 1 point per 100 minor units, partner 2 1.5, partner 3 5 per unit; every
    member stays in the base tier (under 500 qualifying points); points live 12 months.
    """
    world.ledger.call(world.admin, "setPointValue", 2, b"EUR")
    ledger, ends = world.ledger, {}

    def goto(month: int) -> None:
        world.goto_month(month)
        # Nothing has happened in the new month yet: this is the supply at the last one's end.
        ends[month - 1] = ledger.total_supply()

    start = world.month() + 1
    ana_key, ana = member("ana")
    ben_key, ben = member("ben")
    _, chloe = member("chloe")
    _, dan = member("dan")
    goto(start)
    records = world.earn(world.earn_op(1, ana, 10_000), world.earn_op(2, ben, 20_000)).earn_records()  # 100 + 300
    world.redeem(world.redeem_op(ben_key, 1, 50))
    world.reverse(world.reverse_op(records[0], 20))  # ana keeps 80
    goto(start + 1)
    world.earn(world.earn_op(1, chloe, 4_000))  # 40, expiring at the end of start + 13
    world.redeem(world.redeem_op(ana_key, 2, 30))  # from her earliest points: 50 left of start's
    goto(start + 2)  # a quiet month
    goto(start + 13)  # start's points (ana 50, ben 250) ended with start + 12
    world.earn(world.earn_op(3, dan, 10))  # 50
    sweep = world.ledger.expire(world.relayer, [ben])  # puts ben's expiry on-chain; supply unchanged
    assert [e.args["points"] for e in sweep.named("Expired")] == [250]
    goto(start + 14)  # chloe's 40 ended with start + 13
    history = load_history(world.chain.w3, ledger, from_block=ledger.deployment_block)
    return Scripted(world, start, ends, history)


@pytest.fixture(scope="module")
def scripted() -> Iterator[Scripted]:
    world = World.create(EmbeddedChain())
    try:
        yield run_history(world)
    finally:
        world.chain.close()


def test_monthly_figures_match_hand_computed_ones_and_the_supply(scripted: Scripted) -> None:
    s = scripted.start
    rows = monthly(scripted.history)
    by_month = {r.month: r for r in rows}
    assert rows[0].month == s - 1  # the deployment's month: partners added, no points yet
    assert [r.month for r in rows] == list(range(s - 1, s + 15))
    figures = {
        r.month: (r.issued, r.redeemed, r.reversed, r.expired, r.liability_end)
        for r in rows
        if r.issued or r.redeemed or r.reversed or r.expired
    }
    assert figures == {
        s: (400, 50, 20, 0, 330),
        s + 1: (40, 30, 0, 0, 340),
        s + 12: (0, 0, 0, 300, 40),  # ana 50 (unswept) + ben 250 (swept the month after)
        s + 13: (50, 0, 0, 40, 50),
    }
    assert all(by_month[m].liability_end == 340 for m in range(s + 2, s + 12))
    assert all(r.balanced for r in rows)
    assert [r.liability_start for r in rows[1:]] == [r.liability_end for r in rows[:-1]]
    # The chain's own totalSupply at the start of each next month, read while the history was made.
    assert scripted.supply_at_month_end == {
        s - 1: 0,
        s: 330,
        s + 1: 340,
        s + 12: 40,
        s + 13: 50,
    }
    for month, supply in scripted.supply_at_month_end.items():
        assert by_month[month].liability_end == supply, month_label(month)
    last = rows[-1]
    assert not last.complete and all(r.complete for r in rows[:-1])
    assert last.liability_end == outstanding(scripted.history) == scripted.world.ledger.total_supply() == 50


def test_a_window_of_months_keeps_the_liability_carried_into_it(scripted: Scripted) -> None:
    s = scripted.start
    rows = monthly(scripted.history, first_month=s + 12, last_month=s + 40)
    assert [r.month for r in rows] == [s + 12, s + 13, s + 14]  # never beyond the month in progress
    assert (rows[0].liability_start, rows[0].expired, rows[0].liability_end) == (340, 300, 40)
    before = monthly(scripted.history, first_month=s - 30, last_month=s)  # the ledger did not exist yet
    assert [r.month for r in before] == [s - 1, s]


def test_the_chart_is_a_png_of_sensible_size_with_its_line_and_bars(scripted: Scripted) -> None:
    png = render_chart(monthly(scripted.history), source="test")
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and 20_000 < len(png) < 2_000_000
    image = Image.open(io.BytesIO(png))
    image.verify()
    image = Image.open(io.BytesIO(png)).convert("RGB")
    assert image.size == (1100, 720)
    colours = {c for _, c in image.getcolors(maxcolors=1_000_000) or []}
    # The liability line and each kind of bar that happened were drawn in their colours.
    for hex_colour in ("#1f3b73", "#009E73", "#0072B2", "#E69F00", "#D55E00"):
        rgb = tuple(int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
        assert rgb in colours, hex_colour
    empty = Image.open(io.BytesIO(render_chart([])))
    assert empty.size == (1100, 720)


def test_the_auditors_folder_has_every_file(scripted: Scripted, tmp_path: Path) -> None:
    s, history, world = scripted.start, scripted.history, scripted.world
    verified = verify_chain(
        world.chain.w3,
        world.ledger,
        from_block=history.from_block,
        to_block=history.to_block,
        fetched=(history.events, history.times),
    )
    assert verified.ok, verified.discrepancies
    folder = write_folder(
        tmp_path / "report",
        history,
        period_from=month_start(s),
        period_to=month_start(s + 2),
        network="embedded (test)",
        names={1: "Bean & Leaf", 2: "Grocer", 3: "Airline"},
        verify=verified,
    )
    names = sorted(p.name for p in (tmp_path / "report").iterdir())
    assert names == sorted(
        ["README.txt", "chart.png", "monthly.csv", "settlement.csv", "settlement.json", "settlement.txt", "verify.txt"]
        # the programme metrics (SPEC 5, r2)
        + ["metrics.png", "metrics.csv", "metrics.txt", "flows.csv", "campaigns.csv"]
    )
    assert set(folder.files) == set(names)
    assert Image.open(tmp_path / "report" / "chart.png").size == (1100, 720)
    months = list(csv.DictReader((tmp_path / "report" / "monthly.csv").open()))
    assert [(m["month"], m["issued"], m["liability_end"]) for m in months] == [
        (month_label(s), "400", "330"),
        (month_label(s + 1), "40", "340"),
    ]
    statement = json.loads((tmp_path / "report" / "settlement.json").read_text())
    lines = {
        p["partner_id"]: (p["name"], p["issued"], p["reversed"], p["redeemed"], p["net_amount"])
        for p in statement["partners"]
    }
    assert lines == {
        1: ("Bean & Leaf", 140, 20, 50, 140),  # (140 - 20 - 50) points at 2 minor units
        2: ("Grocer", 300, 0, 30, 540),
        3: ("Airline", 0, 0, 0, 0),
    }
    assert statement["liability"] == {"start_points": 0, "end_points": 340, "start_amount": 0, "end_amount": 680}
    assert statement["balanced"] is True
    text = (tmp_path / "report" / "settlement.txt").read_text()
    assert "Bean & Leaf" in text and "balances" in text and "DOES NOT" not in text
    assert "partner_id,issued" in (tmp_path / "report" / "settlement.csv").read_text()
    assert "result: no discrepancy" in (tmp_path / "report" / "verify.txt").read_text()
    readme = (tmp_path / "report" / "README.txt").read_text()
    assert world.ledger.address in readme
    assert f"{history.from_block} (deployment) to {history.to_block}" in readme
    for name in set(names) - {"README.txt"}:
        assert name in readme  # each file is described and its SHA-256 given


@pytest.fixture
def anvil_world() -> Iterator[World]:
    if not _anvil_available():
        if anvil_required():
            pytest.fail("anvil is missing in CI: scripts/bootstrap should have installed it with npm ci")
        pytest.skip("anvil not installed (run scripts/bootstrap)")
    world = World.create(AnvilNode())
    try:
        yield world
    finally:
        world.chain.close()


def test_loyalty_audit_report_writes_the_folder_from_an_rpc_node(anvil_world: World, tmp_path: Path) -> None:
    world = anvil_world
    url = world.chain.url  # type: ignore[attr-defined]
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "deployment.json").write_text(json.dumps(world.ledger.deployment_record(network=url)))
    start = world.month() + 1
    _, ana = member("ana")
    world.goto_month(start)
    world.earn(world.earn_op(1, ana, 12_345))  # 123 points
    world.goto_month(start + 1)
    args = ["audit", "report", "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "out")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert f"report written to {(tmp_path / 'out').resolve()}" in result.output.replace("\n", "")
    assert "no discrepancy" in result.output and "balances" in result.output
    files = {p.name for p in (tmp_path / "out").iterdir()}
    assert files == {
        "README.txt",
        "chart.png",
        "monthly.csv",
        "settlement.csv",
        "settlement.json",
        "settlement.txt",
        "verify.txt",
        "metrics.png",
        "metrics.csv",
        "metrics.txt",
        "flows.csv",
        "campaigns.csv",
    }
    statement = json.loads((tmp_path / "out" / "settlement.json").read_text())
    assert [p["issued"] for p in statement["partners"]] == [123, 0, 0]
    assert statement["liability"]["end_points"] == 123 == world.ledger.total_supply()
    assert url in (tmp_path / "out" / "README.txt").read_text()

    bad = CliRunner().invoke(main, [*args, "--from", "2030-02-01", "--to", "2030-01-01"])
    assert bad.exit_code == 2 and "--to must be after --from" in bad.output


def test_a_history_read_again_reads_only_new_blocks_and_notices_a_reorg() -> None:
    world = World.create(EmbeddedChain())
    try:
        _, ana = member("ana")
        ledger, w3 = world.ledger, world.chain.w3
        first = load_history(w3, ledger, from_block=ledger.deployment_block)
        assert load_history(w3, ledger, from_block=ledger.deployment_block, since=first) is first  # nothing new
        fork = world.chain.snapshot()
        world.earn(world.earn_op(1, ana, 1_000, receipt="kept-or-not"))
        grown = load_history(w3, ledger, from_block=ledger.deployment_block, since=first)
        assert grown.events[: len(first.events)] == first.events and len(grown.events) > len(first.events)
        assert grown == load_history(w3, ledger, from_block=ledger.deployment_block)
        assert outstanding(grown) == 10

        # The block `grown` ended on is replaced by another at the same height: read it all again.
        world.chain.revert(fork)
        world.relayer._nonce = None  # the reverted transaction's nonce is free again
        world.earn(world.earn_op(2, ana, 1_000, receipt="instead"))  # 15 points, in a different block
        again = load_history(w3, ledger, from_block=ledger.deployment_block, since=grown)
        assert again.to_block == grown.to_block and again.to_block_hash != grown.to_block_hash
        assert again == load_history(w3, ledger, from_block=ledger.deployment_block)
        assert outstanding(again) == 15 == ledger.total_supply()
    finally:
        world.chain.close()
