"""Webhooks through the API and the submitter: a partner subscribes, its operations' outcomes
arrive signed at a real receiver; other partners' do not; roles and ownership are enforced."""

from __future__ import annotations

import json
import time

from gateway.webhooks.signing import HEADER, verify
from tests.gateway.conftest import Gateway
from tests.gateway.test_webhooks import Receiver


def _earn(gw: Gateway, key: str, receipt: str, amount: int = 1250) -> str:
    body = {"member_id": "card-1", "receipt_id": receipt, "amount_minor": amount, "currency": "EUR"}
    response = gw.post("/v1/earn", key, body)
    assert response.status_code == 202, response.text
    operation_id: str = response.json()["operation_id"]
    return operation_id


def _wait(receiver: Receiver, count: int, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while len(receiver.received) < count and time.monotonic() < deadline:
        time.sleep(0.05)


def test_outcomes_reach_the_partners_own_webhook_signed(gw: Gateway) -> None:
    receiver = Receiver()
    try:
        bean, fresh = gw.partner(), gw.partner("FreshMart")
        created = gw.post("/v1/webhooks", bean["api_key"], {"url": receiver.url("/bean"), "events": ["*"]})
        assert created.status_code == 201, created.text
        hook = created.json()
        assert hook["secret"].startswith("whsec_") and hook["partner_id"] == bean["partner_id"]
        listed = gw.get("/v1/webhooks", bean["api_key"]).json()["items"]
        assert [h["webhook_id"] for h in listed] == [hook["webhook_id"]] and "secret" not in listed[0]
        assert gw.get("/v1/webhooks", fresh["api_key"]).json()["items"] == []
        for partner in (bean, fresh):
            gw.post("/v1/members", partner["api_key"], {"member_id": "card-1", "pin": "1234"})
        confirmed = _earn(gw, bean["api_key"], "R-1")
        _earn(gw, fresh["api_key"], "R-9")  # FreshMart's: not for Bean & Leaf's webhook
        gw.settle()
        gw.runtime.ledger.call(gw.runtime.operator, "setPartnerActive", bean["partner_id"], False)
        rejected = _earn(gw, bean["api_key"], "R-2")
        gw.settle()
        _wait(receiver, 2)
        time.sleep(0.5)  # nothing more should come
        payloads = [json.loads(body) for _, _, body in receiver.received]
        assert sorted((p["type"], p["data"]["operation_id"]) for p in payloads) == sorted(
            [("operation.confirmed", confirmed), ("operation.rejected", rejected)]
        )
        for _, headers, body in receiver.received:
            assert verify(hook["secret"], headers[HEADER], body)
        by_type = {p["type"]: p["data"] for p in payloads}
        assert by_type["operation.confirmed"]["points"] == 12 and by_type["operation.confirmed"]["tx_hash"]
        assert by_type["operation.rejected"]["error"]["code"] == "partner_suspended"
        log = gw.get(f"/v1/webhooks/{hook['webhook_id']}/deliveries", bean["api_key"]).json()["items"]
        assert sorted(d["status"] for d in log) == ["succeeded", "succeeded"]
        assert all(len(d["log"]) == 1 and d["log"][0]["status_code"] == 204 for d in log)
    finally:
        receiver.stop()


def test_webhook_roles_ownership_and_bad_input(gw: Gateway) -> None:
    bean, fresh = gw.partner(), gw.partner("FreshMart")
    hook = gw.post("/v1/webhooks", bean["api_key"], {"url": "http://127.0.0.1:9/x", "events": ["*"]}).json()
    other = fresh["api_key"]
    assert gw.get(f"/v1/webhooks/{hook['webhook_id']}/deliveries", other).status_code == 404
    assert gw.client.delete(f"/v1/webhooks/{hook['webhook_id']}", headers=gw.headers(other)).status_code == 404
    auditor = gw.post("/v1/api-keys", gw.admin_key, {"role": "auditor"}).json()["api_key"]
    assert gw.get("/v1/webhooks", auditor).json()["error"]["code"] == "wrong_role"
    bad = [
        ({"url": "ftp://example.com/x", "events": ["*"]}, "invalid_webhook_url"),
        ({"url": "http://127.0.0.1:9/x", "events": ["member.hacked"]}, "invalid_webhook_events"),
        ({"url": "http://127.0.0.1:9/x", "events": []}, "validation_error"),
        ({"url": "http://127.0.0.1:9/x"}, "validation_error"),
    ]
    for body, code in bad:
        response = gw.post("/v1/webhooks", bean["api_key"], body)
        assert (response.status_code, response.json()["error"]["code"]) == (422, code), response.text
    # The operator sees every webhook's log, and deletes its own; deleting twice is 404.
    assert gw.get(f"/v1/webhooks/{hook['webhook_id']}/deliveries", gw.admin_key).status_code == 200
    delete = gw.client.delete(f"/v1/webhooks/{hook['webhook_id']}", headers=gw.headers(bean["api_key"]))
    assert delete.status_code == 204
    again = gw.client.delete(f"/v1/webhooks/{hook['webhook_id']}", headers=gw.headers(bean["api_key"]))
    assert again.status_code == 404
