"""The chapters of `loyalty demo` that revision 2 of the rules added (SPEC section 7): a
campaign, an award, a return of goods paid with points, a programme change under the notice
period, and a reversal with clawback into debt that later points repay, each through the
gateway's API and the partner SDK as a real coalition would run them."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
from rich.console import Console

from gateway.app.runtime import Runtime
from partners.client import PartnerClient

DAY = 86_400


def award_and_return(
    console: Console, section: Callable[[str], None], bean: PartnerClient, fresh: PartnerClient
) -> None:
    section("9. A campaign, an award, and goods paid with points brought back")
    now = int(time.time())
    campaign = bean.create_campaign(
        name="double points week",
        starts_at=now - 3600,  # the chain's clock runs ahead of this one here: the window covers both
        ends_at=now + 60 * DAY,
        multiplier_bps=10_000,
        min_spend_minor=500,
        budget=500,
    )
    console.print(
        f"Bean & Leaf registers campaign {campaign.campaign_id} ({campaign.name}): double points on purchases of "
        f"5.00 EUR or more, budget {campaign.budget} points from its allowance, signed by its key on-chain"
    )
    quote = bean.earn("ana", "BL-0005", 800, "EUR", campaign_id=campaign.campaign_id)
    done = bean.wait_for(quote.operation_id)
    console.print(
        f"ana's 8.00 EUR breakfast names it: quoted {quote.points} (bonus {quote.bonus}), confirmed {done.points} "
        f"(bonus {done.bonus}); the Earned event carries the campaign and the bonus, so anyone recomputes both"
    )
    award = bean.award("ana", "BL-AW-0001", 50, reason="goodwill", note="the espresso machine was down", wait=True)
    console.print(
        f"Bean & Leaf awards ana {award.points} points for goodwill (no purchase; drawn from its allowance, "
        f"signed by its key, block {award.block_number})"
    )
    back = fresh.refund("FM-R-0001", "FM-RF-0001", 40, reason="returned a basket", member_id="ana", wait=True)
    console.print(
        f"ana returns goods she paid 100 points for at FreshMart: {back.points} points come back "
        f"(at most what that redemption burnt; they expire no earlier than the points it took), "
        f"block {back.block_number}"
    )


def programme_change(
    console: Console,
    section: Callable[[str], None],
    runtime: Runtime,
    admin: httpx.Client,
    bean: PartnerClient,
    travel: Callable[[int], None],
) -> None:
    section("10. A programme change under notice: everyone sees it coming")
    tiers = [t.model_dump(include={"threshold", "multiplier_bps"}) for t in runtime.settings.coalition.tiers]
    tiers[1]["multiplier_bps"] = 15_000  # Silver earns x1.5 from now on
    body = {"tiers": tiers, "debt_allowed": True}
    scheduled = admin.post("/v1/programme/changes", json=body).raise_for_status().json()
    change = next(c for c in scheduled["changes"] if c["kind"] == "tiers")
    days = change["seconds_left"] / DAY
    console.print(
        f"the operator schedules a new tier table (Silver earns x1.5) and a debt policy (a reversal beyond a "
        f"member's points records debt): changes {', '.join(str(c['change_id']) for c in scheduled['changes'])}, "
        f"in force in {days:.0f} days; the ledger announced them (ChangeScheduled), the member page lists "
        "the tier table, and webhooks told every partner (programme.change_scheduled)"
    )
    early = admin.post(f"/v1/programme/changes/{change['change_id']}/apply")
    code = early.json()["error"]["code"]
    console.print(f"applying it before its time: [red]{early.status_code} {code}[/red]: not even the operator can")
    travel(change["effective_at"] + 60)
    deadline = time.monotonic() + 60
    state: dict[str, Any] = {}
    ids = {c["change_id"] for c in scheduled["changes"]}
    while time.monotonic() < deadline:  # the gateway applies due changes by itself
        programme = admin.get("/v1/programme").raise_for_status().json()
        state = next(c for c in programme["changes"] if c["change_id"] == change["change_id"])
        if all(c["state"] != "pending" for c in programme["changes"] if c["change_id"] in ids):
            break
        time.sleep(0.2)
    multipliers = ", ".join(f"x{t['multiplier_bps'] / 10_000:g}" for t in programme["tiers"])
    console.print(f"{days:.0f} days later the gateway applied it ({state['state']}): tiers now {multipliers}")
    quote = bean.earn("ben", "BL-0004", 1_000, "EUR")
    done = bean.wait_for(quote.operation_id)
    console.print(
        f"ben (Silver) buys another 10.00 EUR coffee: quoted {quote.points}, confirmed {done.points} points "
        "under the new table (the gateway reads the terms the contract uses)"
    )


def clawback(console: Console, section: Callable[[str], None], fresh: PartnerClient, sakura: PartnerClient) -> None:
    section("11. A return after the points were spent: clawback into debt")
    basket = fresh.earn("chloe", "FM-0003", 15_640, "GBP", wait=True)
    console.print(f"chloe buys a 156.40 GBP basket at FreshMart: +{basket.points} points")
    chloe = fresh.member("chloe")
    spent = sakura.redeem("chloe", "SA-R-0001", chloe.balance - 6, pin="1357", wait=True)
    console.print(f"she spends {spent.points} of her {chloe.balance} points on a seat upgrade at Sakura Air")
    back = fresh.reverse("FM-0003", amount_minor=15_640, reason="returned the whole basket", member_id="chloe")
    done = fresh.wait_for(back.operation_id)
    console.print(
        f"then she returns the FreshMart basket those points came from: FreshMart takes back {done.points} points; "
        f"she holds {done.points_taken}, so {done.points_taken} are taken and {done.debt} become her debt "
        "(the operator's policy allows it; the balance never goes negative)"
    )
    console.print(f"chloe: balance {fresh.member('chloe').balance}, debt {fresh.member('chloe').debt} points")
