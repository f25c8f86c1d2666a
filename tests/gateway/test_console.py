"""The operator console's reads: the programme and the partners as the chain has them."""

from __future__ import annotations

from tests.gateway.conftest import Gateway


def test_the_programme_and_partners_are_read_from_the_chain(gw: Gateway) -> None:
    bean = gw.partner("Bean & Leaf")
    grocer = gw.partner("Grocer", currency="GBP", per=200)
    ledger, operator = gw.runtime.ledger, gw.runtime.operator
    assert operator is not None
    # Changes made on-chain behind the gateway's back show up: it reads the chain, not its rows.
    ledger.call(operator, "setAllowance", grocer["partner_id"], 1234)
    change = ledger.schedule(operator, "setExpiryMonths", 24)
    key = bean["api_key"]
    gw.post("/v1/members", key, {"member_id": "m-1", "pin": "1234"})
    gw.post("/v1/earn", key, {"member_id": "m-1", "receipt_id": "R-1", "amount_minor": 5000, "currency": "EUR"})
    gw.settle()

    programme = gw.get("/v1/programme", key).json()  # public terms: any key
    assert programme["expiry_months"] == 24
    assert programme["tiers"][0] == {"index": 0, "name": "Green", "threshold": 0, "multiplier_bps": 10_000}
    assert programme["paused"] is False and programme["transfers_enabled"] is False
    assert {"change_id": change, "kind": "expiry", "state": "applied"}.items() <= programme["changes"][-1].items()

    listed = gw.get("/v1/partners", gw.admin_key).json()
    by_id = {p["partner_id"]: p for p in listed["items"]}
    assert by_id[grocer["partner_id"]]["allowance_left"] == 1234
    assert by_id[grocer["partner_id"]]["earn_rate"] == {"points": 1, "per_minor_units": 200}
    assert (by_id[bean["partner_id"]]["name"], by_id[bean["partner_id"]]["issued"]) == ("Bean & Leaf", 50)
    assert by_id[bean["partner_id"]]["currency"] == "EUR" and by_id[bean["partner_id"]]["issuing"] is True

    own = gw.get(f"/v1/partners/{bean['partner_id']}", key)
    assert own.status_code == 200 and own.json()["signer_address"] == bean["signer_address"]
    other = gw.get(f"/v1/partners/{grocer['partner_id']}", key)
    assert (other.status_code, other.json()["error"]["code"]) == (403, "forbidden")
    assert gw.get("/v1/partners", key).status_code == 403  # the list is the operator's
    missing = gw.get("/v1/partners/77", gw.admin_key)
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "unknown_partner")
