"""The SDK's campaigns (r2), sync and async, against a live gateway over real HTTP on the
embedded chain: managed partners, and self-custody partners that sign the campaign and the
earns naming it (`CampaignEarn`); bonuses read back from the chain's `Earned` events."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway.chain.campaigns import campaign
from gateway.cli import main
from partners.client import AsyncPartnerClient
from partners.errors import NotFound, ValidationFailed
from partners.signing import address_of
from tests.partners.conftest import LiveGateway
from tests.partners.test_sdk import FAST, managed, self_custody
from tests.support import DAY, key_for


def _iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat()


def test_a_managed_partner_runs_a_campaign(live: LiveGateway) -> None:
    cafe, _ = managed(live)
    grocer, _ = managed(live)
    with cafe, grocer:
        now = live.runtime.chain.latest_timestamp()
        c = cafe.create_campaign(name="double", starts_at=now, ends_at=now + 7 * DAY, multiplier_bps=10_000, budget=12)
        assert (c.name, c.multiplier_bps, c.budget, c.spent, c.tiers) == ("double", 10_000, 12, 0, [0, 1, 2])
        with pytest.raises(ValidationFailed) as refused:
            cafe.create_campaign(starts_at=now, ends_at=now + DAY, budget=5)  # no bonus at all
        assert refused.value.code == "invalid_campaign"
        member = cafe.enroll_member(live.unique("card"), pin="1234")
        first = cafe.earn(member.member_id, "E-1", 1_000, "EUR", campaign_id=c.campaign_id)
        assert (first.points, first.bonus) == (20, 10)
        second = cafe.earn(member.member_id, "E-2", 1_000, "EUR", campaign_id=c.campaign_id)
        assert (second.points, second.bonus) == (12, 2)  # the 2 left of the budget
        for accepted in (first, second):
            done = cafe.wait_for(accepted.operation_id)
            assert (done.points, done.bonus, done.campaign_id) == (accepted.points, accepted.bonus, c.campaign_id)
        with pytest.raises(NotFound) as other:
            grocer.earn(member.member_id, "G-1", 1_000, "EUR", campaign_id=c.campaign_id)
        assert other.value.code == "unknown_campaign"
        with pytest.raises(NotFound):
            grocer.campaign(c.campaign_id)
        assert grocer.campaigns() == []
        [mine] = cafe.campaigns()
        assert (mine.campaign_id, mine.spent, mine.remaining, mine.purchases, mine.members_reached) == (
            c.campaign_id,
            12,
            0,
            2,
            1,
        )
        assert live.balance(member.address) == 32


def test_a_self_custody_partner_signs_its_campaign_and_the_earns_naming_it(live: LiveGateway) -> None:
    client, partner = self_custody(live)
    with client:
        now = live.runtime.chain.latest_timestamp()
        c = client.create_campaign(starts_at=now, ends_at=now + DAY, fixed_bonus=7, budget=100, tiers=[0])
        assert (c.partner_id, c.tiers, c.fixed_bonus) == (partner["partner_id"], [0], 7)
        member = client.enroll_member(live.unique("card"), pin="1234")
        earn = client.earn(member.member_id, "E-1", 1_000, "EUR", campaign_id=c.campaign_id, wait=True)
        assert (earn.points, earn.bonus) == (17, 7)
        [event] = live.events("Earned", earn.receipt_ref or "")
        assert (event.args["campaignId"], event.args["bonus"], event.args["points"]) == (c.campaign_id, 7, 17)
        # The SDK signs the reversal over the leaf with the bonus in it.
        reversal = client.reverse("E-1", points=17, reason="returned", member_id=member.member_id, wait=True)
        assert reversal.status == "confirmed" and live.balance(member.address) == 0


def test_the_async_client_runs_a_self_signed_campaign(live: LiveGateway) -> None:
    key = key_for(live.unique("async-partner"))
    partner = live.partner(signer_address=address_of(key))

    async def till() -> tuple[int, int]:
        async with AsyncPartnerClient(live.url, str(partner["api_key"]), signing_key=key, retry=FAST) as client:
            now = live.runtime.chain.latest_timestamp()
            c = await client.create_campaign(starts_at=now, ends_at=now + DAY, multiplier_bps=5_000, budget=50)
            member = await client.enroll_member(live.unique("card"), pin="1234")
            earn = await client.earn(member.member_id, "E-1", 2_000, "EUR", campaign_id=c.campaign_id, wait=True)
            assert [x.campaign_id for x in await client.campaigns()] == [c.campaign_id]
            view = await client.campaign(c.campaign_id)
            return int(earn.bonus or 0), view.spent

    assert asyncio.run(till()) == (10, 10)


def test_loyalty_campaign_add_and_list_through_the_gateway(live: LiveGateway, tmp_path: Path) -> None:
    partner = live.partner()
    key_file = tmp_path / "partner.key"
    key_file.write_text(str(partner["api_key"]))
    now = live.runtime.chain.latest_timestamp()
    window = ["--starts-at", _iso(now), "--ends-at", _iso(now + DAY)]
    gateway = ["--gateway", live.url, "--api-key-file", str(key_file)]
    runner = CliRunner()
    added = runner.invoke(
        main,
        ["campaign", "add", *gateway, *window, "--budget", "40", "--fixed-bonus", "3", "--tier", "1", "--name", "x"],
    )
    assert added.exit_code == 0, added.output
    campaign_id = int(added.output.split("campaign ", 1)[1].split(" ", 1)[0])
    listed = runner.invoke(main, ["campaign", "list", *gateway])
    assert listed.exit_code == 0 and "0 / 40" in listed.output, listed.output
    on_chain = campaign(live.runtime.ledger, campaign_id)
    assert on_chain is not None and (on_chain.tier_mask, on_chain.fixed_bonus, on_chain.budget) == (0b10, 3, 40)
    refused = runner.invoke(main, ["campaign", "add", *gateway, *window, "--budget", "40"])  # no bonus
    assert refused.exit_code != 0 and "invalid_campaign" in refused.output
