"""Member debt (SPEC sections 2, 4, 5, r2) through the gateway, on the embedded chain, on SQLite
and PostgreSQL: the operator's debt policy from the console, a reversal beyond the member's
balance rejected under the default policy and leaving debt under the other, the operation
telling how many points were taken and how many became debt, the member view's debt, the
next earn paying it first, and the `member.debt_recorded` webhook at a real receiver."""

from __future__ import annotations

import json
import time
from typing import Any

from gateway.webhooks.signing import HEADER, verify
from tests.gateway.conftest import Gateway
from tests.gateway.test_webhooks import Receiver


def _earn(gw: Gateway, key: str, receipt: str, amount: int) -> None:
    body = {"member_id": "card-1", "receipt_id": receipt, "amount_minor": amount, "currency": "EUR"}
    assert gw.post("/v1/earn", key, body).status_code == 202


def _reverse(gw: Gateway, key: str, refund_id: str, points: int) -> str:
    body = {"receipt_id": "E-1", "refund_id": refund_id, "points": points, "reason": "returned"}
    response = gw.post("/v1/reversals", key, body)
    assert response.status_code == 202, response.text
    return str(response.json()["operation_id"])


def _operation(gw: Gateway, key: str, operation_id: str) -> dict[str, Any]:
    return dict(gw.get(f"/v1/operations/{operation_id}", key).json())


def allow_debt(gw: Gateway, allowed: bool = True) -> dict[str, Any]:
    response = gw.post("/v1/programme/changes", gw.admin_key, {"debt_allowed": allowed})
    assert response.status_code == 202, response.text
    [change] = response.json()["changes"]
    assert (change["kind"], change["state"], change["terms"]) == ("debt_policy", "applied", {"debt_allowed": allowed})
    return dict(change)


def spent(gw: Gateway) -> str:
    """A member who earned 300 points (receipt E-1) and redeemed 250 of them; the partner's key."""
    key = gw.partner()["api_key"]
    assert gw.post("/v1/members", key, {"member_id": "card-1", "pin": "1234"}).status_code == 201
    _earn(gw, key, "E-1", 30_000)
    gw.settle()
    body = {"member_id": "card-1", "receipt_id": "R-1", "points": 250, "authorization": {"pin": "1234"}}
    assert gw.post("/v1/redemptions", key, body).status_code == 202
    gw.settle()
    assert gw.get("/v1/members/card-1", key).json()["balance"] == 50
    return key


def test_a_reversal_beyond_the_balance_is_rejected_then_leaves_debt_under_the_policy(gw: Gateway) -> None:
    key = spent(gw)
    assert gw.get("/v1/programme", gw.admin_key).json()["debt_allowed"] is False  # the default
    refused = _reverse(gw, key, "E-1/r1", 120)
    gw.settle()
    op = _operation(gw, key, refused)
    assert (op["status"], op["error"]["code"], op["points_taken"], op["debt"]) == (
        "rejected",
        "insufficient_points",
        None,
        None,
    )
    member = gw.get("/v1/members/card-1", key).json()
    assert (member["balance"], member["debt"]) == (50, 0)

    # The policy is the operator's: a partner's key cannot change it, nor can a bad value.
    assert gw.post("/v1/programme/changes", key, {"debt_allowed": True}).status_code == 403
    bad = gw.post("/v1/programme/changes", gw.admin_key, {"debt_allowed": "yes"})
    assert (bad.status_code, bad.json()["error"]["code"]) == (422, "validation_error")
    assert gw.get("/v1/programme", gw.admin_key).json()["debt_allowed"] is False

    allow_debt(gw)
    programme = gw.get("/v1/programme", gw.admin_key).json()
    assert programme["debt_allowed"] is True
    assert programme["changes"][-1]["kind"] == "debt_policy"
    reversal = _reverse(gw, key, "E-1/r2", 120)
    gw.settle()
    op = _operation(gw, key, reversal)
    assert (op["status"], op["points"], op["points_taken"], op["debt"]) == ("confirmed", 120, 50, 70)
    member = gw.get("/v1/members/card-1", key).json()
    assert (member["balance"], member["debt"]) == (0, 70)
    assert gw.runtime.ledger.debt_of(member["address"]) == 70

    # A reversal with nothing left to take: all of it becomes debt.
    nothing_left = _reverse(gw, key, "E-1/r3", 30)
    gw.settle()
    op = _operation(gw, key, nothing_left)
    assert (op["status"], op["points_taken"], op["debt"]) == ("confirmed", 0, 30)

    # The next earn (150 points) pays the 100 owed first; the member keeps the rest.
    repaying = gw.post(
        "/v1/earn", key, {"member_id": "card-1", "receipt_id": "E-2", "amount_minor": 15_000, "currency": "EUR"}
    ).json()["operation_id"]
    gw.settle()
    op = _operation(gw, key, repaying)
    assert (op["status"], op["points"], op["debt_repaid"]) == ("confirmed", 150, 100)
    _earn(gw, key, "E-3", 1_000)
    gw.settle()
    assert _operation(gw, key, reversal)["debt"] == 70  # unchanged
    member = gw.get("/v1/members/card-1", key).json()
    assert (member["balance"], member["debt"]) == (60, 0)
    assert gw.runtime.ledger.total_debt() == 0
    items = gw.get("/v1/members/card-1/activity", key).json()["items"]
    assert {i["receipt_id"]: i.get("debt_repaid") for i in items if i["kind"] == "earn"} == {
        "E-1": 0,
        "E-2": 100,
        "E-3": 0,
    }


def test_switching_the_policy_back_rejects_again(gw: Gateway) -> None:
    key = spent(gw)
    allow_debt(gw)
    allow_debt(gw, False)
    assert gw.get("/v1/programme", gw.admin_key).json()["debt_allowed"] is False
    refused = _reverse(gw, key, "E-1/r1", 60)
    gw.settle()
    assert _operation(gw, key, refused)["error"]["code"] == "insufficient_points"
    assert gw.get("/v1/members/card-1", key).json()["debt"] == 0


def test_the_members_partner_hears_of_its_debt_by_webhook(gw: Gateway) -> None:
    """`member.debt_recorded` goes to the partner that enrolled the member (not to the partner
    whose reversal left it), signed, once, and only when a reversal leaves debt."""
    receiver = Receiver()
    try:
        bean, fresh = gw.partner(), gw.partner("FreshMart")
        hooks = {}
        for name, partner in (("bean", bean), ("fresh", fresh)):
            body = {"url": receiver.url(f"/{name}"), "events": ["member.debt_recorded"]}
            created = gw.post("/v1/webhooks", partner["api_key"], body)
            assert created.status_code == 201, created.text
            hooks[name] = created.json()
        assert gw.post("/v1/members", bean["api_key"], {"member_id": "card-1", "pin": "1234"}).status_code == 201
        _earn(gw, fresh["api_key"], "E-1", 30_000)  # 300 points at FreshMart
        gw.settle()
        body = {"member_id": "card-1", "receipt_id": "R-1", "points": 250, "authorization": {"pin": "1234"}}
        assert gw.post("/v1/redemptions", bean["api_key"], body).status_code == 202
        gw.settle()
        refused = _reverse(gw, fresh["api_key"], "E-1/r1", 120)  # the default policy: rejected
        gw.settle()
        assert _operation(gw, fresh["api_key"], refused)["status"] == "rejected"
        allow_debt(gw)
        within = _reverse(gw, fresh["api_key"], "E-1/r2", 20)  # 50 held: no debt, no notice
        gw.settle()
        assert _operation(gw, fresh["api_key"], within)["debt"] == 0
        beyond = _reverse(gw, fresh["api_key"], "E-1/r3", 100)  # 30 held: 70 owed
        gw.settle()
        deadline = time.monotonic() + 30
        while not receiver.received and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # nothing more should come
        assert [path for path, _, _ in receiver.received] == ["/bean"]
        _, headers, raw = receiver.received[0]
        assert verify(hooks["bean"]["secret"], headers[HEADER], raw)
        payload = json.loads(raw)
        assert payload["type"] == "member.debt_recorded"
        data = payload["data"]
        assert (data["member_id"], data["points"], data["partner_id"], data["operation_id"]) == (
            "card-1",
            70,
            fresh["partner_id"],
            beyond,
        )
        member = gw.get("/v1/members/card-1", bean["api_key"]).json()
        assert (member["balance"], member["debt"]) == (0, 70)
    finally:
        receiver.stop()
