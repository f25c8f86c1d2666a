"""The chapters of `loyalty demo` that revision 2 of the rules added (SPEC section 7): an award,
a return of goods paid with points, and a programme change under the notice period, each
through the gateway's API and the partner SDK as a real coalition would run them."""

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
    section("9. An award, and goods paid with points brought back")
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
    scheduled = admin.post("/v1/programme/changes", json={"tiers": tiers}).raise_for_status().json()
    change = scheduled["changes"][0]
    days = change["seconds_left"] / DAY
    console.print(
        f"the operator schedules a new tier table (Silver earns x1.5): change {change['change_id']}, "
        f"in force in {days:.0f} days; the ledger announced it (ChangeScheduled), the member page lists it, "
        "and webhooks told every partner (programme.change_scheduled)"
    )
    early = admin.post(f"/v1/programme/changes/{change['change_id']}/apply")
    code = early.json()["error"]["code"]
    console.print(f"applying it before its time: [red]{early.status_code} {code}[/red]: not even the operator can")
    travel(change["effective_at"] + 60)
    deadline = time.monotonic() + 60
    state: dict[str, Any] = {}
    while time.monotonic() < deadline:  # the gateway applies due changes by itself
        programme = admin.get("/v1/programme").raise_for_status().json()
        state = next(c for c in programme["changes"] if c["change_id"] == change["change_id"])
        if state["state"] != "pending":
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
