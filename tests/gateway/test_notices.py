"""Member and partner notices: raised from the chain's views by the scan, once each, to the
enrolling partner's webhook."""

from __future__ import annotations

import json

from gateway.points.rules import month_start
from gateway.webhooks.deliver import Deliverer, Policy
from gateway.webhooks.notices import NoticePolicy, scan
from tests.gateway.conftest import Gateway
from tests.gateway.test_webhooks import Receiver, _drain


def test_scan_raises_each_notice_once_to_the_enrolling_partner(gw: Gateway) -> None:
    receiver = Receiver()
    try:
        bean, fresh = gw.partner(), gw.partner("FreshMart")
        hook = gw.post("/v1/webhooks", bean["api_key"], {"url": receiver.url("/bean"), "events": ["*"]}).json()
        other = gw.post("/v1/webhooks", fresh["api_key"], {"url": receiver.url("/fresh"), "events": ["*"]}).json()
        assert hook["webhook_id"] and other["webhook_id"]
        gw.post("/v1/members", bean["api_key"], {"member_id": "card-1", "pin": "1234"})
        body = {"member_id": "card-1", "receipt_id": "R-1", "amount_minor": 45_000, "currency": "EUR"}
        assert gw.post("/v1/earn", bean["api_key"], body).status_code == 202
        gw.settle()
        rt = gw.runtime
        policy = NoticePolicy(allowance_low_points=10_000)
        first = scan(rt.sessions, rt.writes, rt.ledger, now=rt.chain.latest_timestamp(), policy=policy)
        assert first.get("member.tier_changed", 0) == 0  # first sight: nothing to compare with
        # Bean & Leaf's allowance drops under the threshold; the member reaches Silver (5,000).
        rt.ledger.call(rt.operator, "setAllowance", bean["partner_id"], 14_000)  # 4,600 of it go next
        body = {"member_id": "card-1", "receipt_id": "R-2", "amount_minor": 460_000, "currency": "EUR"}
        assert gw.post("/v1/earn", bean["api_key"], body).status_code == 202
        gw.settle()
        second = scan(rt.sessions, rt.writes, rt.ledger, now=rt.chain.latest_timestamp(), policy=policy)
        assert (second["member.tier_changed"], second["partner.allowance_low"]) == (1, 1)
        # A year on, in the last days of the month the first points expire in: both expiring and quiet.
        month = rt.ledger.expiring_of(gw.get("/v1/members/card-1", bean["api_key"]).json()["address"])[0][0]
        rt.chain.travel_to(month_start(month + 1) - 5 * 86_400)
        later = rt.chain.latest_timestamp()
        third = scan(rt.sessions, rt.writes, rt.ledger, now=later, policy=policy)
        assert (third["member.points_expiring"], third["member.inactive"], third["member.tier_changed"]) == (1, 1, 1)
        again = scan(rt.sessions, rt.writes, rt.ledger, now=later, policy=policy)
        assert again["new"] == 0 or set(again) <= {
            "new",
            "partner.allowance_low",
            "member.points_expiring",
            "member.inactive",
        }
        deliverer = Deliverer(
            rt.writes,
            kek=rt.settings.key_encryption_key.get_secret_value(),
            production=False,
            policy=Policy(base_seconds=0.05),
        )
        _drain(deliverer, rt.writes)
        deliverer.close()
        types = sorted(json.loads(b)["type"] for p, _, b in receiver.received if p == "/bean")
        assert types.count("member.points_expiring") == 1 and types.count("member.inactive") == 1
        # Up to Silver, then back to Green when a year later the earns leave the 12-month window.
        changes = [json.loads(b)["data"] for p, _, b in receiver.received if b"tier_changed" in b]
        assert sorted((c["previous_tier"], c["tier"]) for c in changes) == [(0, 1), (1, 0)]
        assert types.count("partner.allowance_low") >= 1
        assert [json.loads(b)["type"] for p, _, b in receiver.received if p == "/fresh"] == []
        expiring = next(json.loads(b)["data"] for _, _, b in receiver.received if b"points_expiring" in b)
        assert expiring["member_id"] == "card-1" and expiring["points"] == 5_050
    finally:
        receiver.stop()
