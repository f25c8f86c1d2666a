"""Campaigns through the gateway (SPEC sections 2 and 6, r2), on the embedded chain: registering
one (managed and self-custody partners), refusals that change nothing, earns naming one (the
202's bonus estimate against the confirmed `Earned` bonus, budget exhaustion, another
partner's campaign refused), a reversal of a campaign earn, and the results read back."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from gateway.chain.campaigns import campaign
from partners.signing import CampaignMessage, address_of, sign
from tests.gateway.conftest import Gateway
from tests.support import DAY, key_for


def _iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat()


def _terms(gw: Gateway, **body: Any) -> dict[str, Any]:
    now = gw.runtime.chain.latest_timestamp()
    return {
        "name": "double points week",
        "starts_at": _iso(now),
        "ends_at": _iso(now + 7 * DAY),
        "multiplier_bps": 10_000,
        "budget": 15,
        **body,
    }


def _earn(gw: Gateway, key: str, receipt: str, amount: int = 1_000, **body: Any) -> Any:
    return gw.post(
        "/v1/earn",
        key,
        {"member_id": "card-1", "receipt_id": receipt, "amount_minor": amount, "currency": "EUR", **body},
    )


def _setup(gw: Gateway) -> tuple[dict[str, Any], str]:
    bean = gw.partner()
    key = bean["api_key"]
    assert gw.post("/v1/members", key, {"member_id": "card-1", "pin": "1234"}).status_code == 201
    return bean, key


def test_a_campaign_earn_gets_the_bonus_the_202_announced_until_the_budget_is_spent(gw: Gateway) -> None:
    bean, key = _setup(gw)
    created = gw.post("/v1/campaigns", key, _terms(gw))
    assert created.status_code == 201, created.text
    c = created.json()
    assert (c["campaign_id"], c["partner_id"], c["name"], c["budget"], c["spent"], c["tiers"]) == (
        1,
        bean["partner_id"],
        "double points week",
        15,
        0,
        [0, 1, 2],  # every tier of the default programme
    )
    on_chain = campaign(gw.runtime.ledger, 1)
    assert on_chain is not None and (on_chain.bonus_bps, on_chain.budget) == (10_000, 15)
    # 10 base points each (1 per 100 minor units): bonus 10, then the 5 left, then none.
    accepted = [_earn(gw, key, f"E-{i}", campaign_id=1) for i in range(3)]
    assert [a.status_code for a in accepted] == [202] * 3, [a.text for a in accepted]
    assert [(a.json()["points"], a.json()["bonus"]) for a in accepted] == [(20, 10), (15, 5), (10, 0)]
    plain = _earn(gw, key, "E-plain")
    assert "bonus" not in plain.json() or plain.json()["bonus"] is None
    gw.settle()
    for a in accepted:
        op = gw.get(f"/v1/operations/{a.json()['operation_id']}", key).json()
        assert op["status"] == "confirmed", op
        assert (op["points"], op["bonus"], op["campaign_id"]) == (a.json()["points"], a.json()["bonus"], 1)
        receipt = gw.runtime.chain.w3.eth.get_transaction_receipt(op["tx_hash"])
        event = next(e for e in gw.runtime.ledger.decode_logs(receipt) if e.log_index == op["log_index"])
        assert (event.name, event.args["campaignId"], event.args["bonus"]) == ("Earned", 1, op["bonus"])
    member = gw.get("/v1/members/card-1", key).json()
    assert member["balance"] == 20 + 15 + 10 + 10
    view = gw.get("/v1/campaigns/1", key).json()
    assert (view["spent"], view["remaining"], view["purchases"], view["spend_minor"]) == (15, 0, 3, 3_000)
    assert (view["members_reached"], view["bonus_confirmed"]) == (1, 15)


def test_a_campaign_earn_is_reversed_with_its_bonus_in_the_leaf(gw: Gateway) -> None:
    _, key = _setup(gw)
    assert gw.post("/v1/campaigns", key, _terms(gw, budget=100)).status_code == 201
    earn = _earn(gw, key, "E-1", campaign_id=1)
    assert (earn.json()["points"], earn.json()["bonus"]) == (20, 10)
    gw.settle()
    reversal = gw.post("/v1/reversals", key, {"receipt_id": "E-1", "points": 20, "reason": "returned"})
    assert reversal.status_code == 202, reversal.text
    gw.settle()
    op = gw.get(f"/v1/operations/{reversal.json()['operation_id']}", key).json()
    assert (op["status"], op["points_taken"]) == ("confirmed", 20), op
    assert gw.get("/v1/members/card-1", key).json()["balance"] == 0


def test_another_partners_campaign_or_an_unknown_one_is_refused_and_changes_nothing(gw: Gateway) -> None:
    _, key = _setup(gw)
    other = gw.partner("Crumb")["api_key"]
    assert gw.post("/v1/campaigns", other, _terms(gw)).status_code == 201
    for campaign_id in (1, 2):  # another partner's; none
        refused = _earn(gw, key, "E-1", campaign_id=campaign_id)
        assert (refused.status_code, refused.json()["error"]["code"]) == (404, "unknown_campaign"), refused.text
    for bad in (0, -1, "1"):
        assert _earn(gw, key, "E-1", campaign_id=bad).json()["error"]["code"] == "validation_error"
    assert gw.count("operations") == 0
    # Reading: a partner sees its own only; admins see all.
    assert gw.get("/v1/campaigns", key).json()["items"] == []
    assert gw.get("/v1/campaigns/1", key).json()["error"]["code"] == "unknown_campaign"
    assert [c["campaign_id"] for c in gw.get("/v1/campaigns", other).json()["items"]] == [1]
    assert [c["campaign_id"] for c in gw.get("/v1/campaigns", gw.admin_key).json()["items"]] == [1]
    assert gw.get("/v1/campaigns/1", gw.admin_key).status_code == 200
    assert gw.get("/v1/campaigns/9", gw.admin_key).json()["error"]["code"] == "unknown_campaign"


@pytest.mark.parametrize(
    "change, status, code",
    [
        ({"ends_at": "starts"}, 422, "invalid_campaign"),  # ends when it starts
        ({"multiplier_bps": 0}, 422, "invalid_campaign"),  # no bonus at all
        ({"multiplier_bps": 1_000_001}, 422, "validation_error"),
        ({"tiers": [3]}, 422, "invalid_campaign"),  # the programme has three tiers
        ({"tiers": []}, 422, "invalid_campaign"),
        ({"budget": 0}, 422, "validation_error"),
        ({"fixed_bonus": -1}, 422, "validation_error"),
        ({"starts_at": "yesterday"}, 422, "validation_error"),
        ({"over": True}, 422, "invalid_campaign"),  # already over
        ({"extra": 1}, 422, "validation_error"),
        ({"partner_signature": {"signature": "0x" + "11" * 65, "nonce": 1, "deadline": 2**40}}, 422, None),
    ],
)
def test_bad_campaigns_are_refused_and_change_nothing(
    gw: Gateway, change: dict[str, Any], status: int, code: str | None
) -> None:
    _, key = _setup(gw)
    body = _terms(gw)
    change = dict(change)  # the parameter is shared by the SQLite and PostgreSQL runs: never mutate it
    if change.get("ends_at") == "starts":
        change = {"ends_at": body["starts_at"]}
    if change.pop("over", False):
        now = gw.runtime.chain.latest_timestamp()
        change = {"starts_at": _iso(now - 2 * DAY), "ends_at": _iso(now - DAY)}
    refused = gw.post("/v1/campaigns", key, {**body, **change})
    assert refused.status_code == status, refused.text
    assert refused.json()["error"]["code"] in ((code,) if code else ("invalid_signature",))
    assert gw.runtime.ledger.view("campaignCount") == 0


def test_campaigns_are_created_by_partners_and_self_custody_partners_sign_them(gw: Gateway) -> None:
    auditor = gw.post("/v1/api-keys", gw.admin_key, {"role": "auditor"})
    if auditor.status_code == 201:
        refused = gw.post("/v1/campaigns", auditor.json()["api_key"], _terms(gw))
        assert refused.status_code == 403
    assert gw.post("/v1/campaigns", gw.admin_key, _terms(gw)).status_code == 403
    signer = key_for("campaign-signer")
    partner = gw.partner("Own Keys", signer_address=address_of(signer))
    key = partner["api_key"]
    body = _terms(gw, fixed_bonus=3, multiplier_bps=0)
    unsigned = gw.post("/v1/campaigns", key, body)
    assert (unsigned.status_code, unsigned.json()["error"]["code"]) == (422, "signature_required")
    start = int(datetime.fromisoformat(body["starts_at"]).timestamp())
    end = int(datetime.fromisoformat(body["ends_at"]).timestamp())
    deadline = gw.runtime.chain.latest_timestamp() + 3600
    message = CampaignMessage(partner["partner_id"], start, end, 0, 3, 0, 0b111, 15, 77, deadline)
    signature = sign(gw.runtime.ledger.domain, message, signer).hex()
    signed = {**body, "partner_signature": {"signature": signature, "nonce": 77, "deadline": deadline}}
    created = gw.post("/v1/campaigns", key, signed, idempotency_key="c-1")
    assert created.status_code == 201, created.text
    again = gw.post("/v1/campaigns", key, signed, idempotency_key="c-1")  # the stored answer, no second
    assert again.json() == created.json()
    assert gw.runtime.ledger.view("campaignCount") == 1
    replayed = gw.post("/v1/campaigns", key, signed)  # the nonce is spent
    assert (replayed.status_code, replayed.json()["error"]["code"]) == (409, "nonce_already_used")
    # A signature over other terms than those sent is refused.
    forged = {**signed, "budget": 1_000}
    assert gw.post("/v1/campaigns", key, forged).json()["error"]["code"] == "invalid_signature"
    assert gw.runtime.ledger.view("campaignCount") == 1


def test_a_batch_of_earns_names_campaigns_with_the_same_rules(gw: Gateway) -> None:
    _, key = _setup(gw)
    other = gw.partner("Crumb")["api_key"]
    assert gw.post("/v1/campaigns", key, _terms(gw)).status_code == 201  # 1: budget 15
    assert gw.post("/v1/campaigns", other, _terms(gw)).status_code == 201  # 2: another partner's
    records = [
        {"kind": "earn", "member_id": "card-1", "receipt_id": f"B-{i}", "amount_minor": 1_000, "currency": "EUR"}
        for i in range(5)
    ]
    records[0]["campaign_id"] = records[1]["campaign_id"] = records[2]["campaign_id"] = 1
    records[3]["campaign_id"] = 2
    records[4]["campaign_id"] = 99
    body = "".join(json.dumps(r) + "\n" for r in records)
    headers = {**gw.headers(key), "Content-Type": "application/x-ndjson"}
    response = gw.client.post("/v1/batches", content=body.encode(), headers=headers)
    assert response.status_code == 202, response.text
    assert response.json()["accepted"] == 3
    assert {r["line"]: r["code"] for r in response.json()["refused"]} == {4: "unknown_campaign", 5: "unknown_campaign"}
    gw.settle()
    items = gw.get(f"/v1/batches/{response.json()['batch_id']}", key).json()["items"]
    assert [(i["receipt_id"], i["status"], i["points"]) for i in items] == [
        ("B-0", "confirmed", 20),
        ("B-1", "confirmed", 15),
        ("B-2", "confirmed", 10),
        ("B-3", "refused", None),
        ("B-4", "refused", None),
    ]
    view = gw.get("/v1/campaigns/1", key).json()
    assert (view["spent"], view["purchases"], view["bonus_confirmed"]) == (15, 3, 15)
