"""Refunds of redemptions (r2) through the gateway, on the embedded chain, on SQLite and
PostgreSQL: only at the partner the points were redeemed at, only once the redemption is
confirmed, never more than it burnt minus what was already refunded; managed and self-custody
partners."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from partners.signing import Receipt, RefundMessage, address_of, new_receipt_salt, redemption_leaf, sign
from tests.gateway.conftest import Gateway
from tests.support import key_for


def _earn(gw: Gateway, key: str, receipt: str, amount: int) -> None:
    body = {"member_id": "card-1", "receipt_id": receipt, "amount_minor": amount, "currency": "EUR"}
    assert gw.post("/v1/earn", key, body).status_code == 202


def _redeem(gw: Gateway, key: str, receipt: str, points: int) -> str:
    body = {"member_id": "card-1", "receipt_id": receipt, "points": points, "authorization": {"pin": "1234"}}
    response = gw.post("/v1/redemptions", key, body)
    assert response.status_code == 202, response.text
    return str(response.json()["operation_id"])


def _refund(gw: Gateway, key: str, receipt: str, points: int, redemption: str = "X-1", **extra: Any) -> Any:
    body = {"redemption_receipt_id": redemption, "receipt_id": receipt, "points": points, "reason": "returned", **extra}
    return gw.post("/v1/refunds", key, body)


@pytest.fixture
def shops(gw: Gateway) -> tuple[str, str]:
    cafe, grocer = gw.partner()["api_key"], gw.partner("FreshMart")["api_key"]
    assert gw.post("/v1/members", cafe, {"member_id": "card-1", "pin": "1234"}).status_code == 201
    _earn(gw, cafe, "E-1", 100_000)  # 1,000 points
    gw.settle()
    return cafe, grocer


def test_a_refund_gives_back_points_of_a_confirmed_redemption_at_its_partner(
    gw: Gateway, shops: tuple[str, str]
) -> None:
    cafe, grocer = shops
    redemption = _redeem(gw, grocer, "X-1", 400)
    early = _refund(gw, grocer, "RF-1", 100)
    assert (early.status_code, early.json()["error"]["code"]) == (409, "redemption_not_confirmed")
    gw.settle()
    assert gw.get("/v1/members/card-1", cafe).json()["balance"] == 600
    # Another partner cannot refund it: for the cafe there is no such redemption.
    elsewhere = _refund(gw, cafe, "RF-1", 100)
    assert (elsewhere.status_code, elsewhere.json()["error"]["code"]) == (404, "unknown_redemption")
    unknown = _refund(gw, grocer, "RF-1", 100, redemption="X-404")
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "unknown_redemption")
    too_many = _refund(gw, grocer, "RF-1", 401)
    assert (too_many.status_code, too_many.json()["error"]["code"]) == (422, "refund_exceeds_redemption")
    assert too_many.json()["error"]["remaining"] == 400
    assert gw.count("operations") == 2

    first = _refund(gw, grocer, "RF-1", 250)
    assert first.status_code == 202, first.text
    # The 250 on their way count: at most 150 more.
    assert _refund(gw, grocer, "RF-2", 151).json()["error"]["code"] == "refund_exceeds_redemption"
    second = _refund(gw, grocer, "RF-2", 150)
    assert second.status_code == 202
    duplicate = _refund(gw, grocer, "RF-2", 1)
    assert duplicate.json()["error"]["code"] in ("duplicate_receipt", "refund_exceeds_redemption")
    gw.settle()
    for response in (first, second):
        op = gw.get(f"/v1/operations/{response.json()['operation_id']}", grocer).json()
        assert (op["kind"], op["status"]) == ("refund", "confirmed")
    member = gw.get("/v1/members/card-1", cafe).json()
    assert member["balance"] == 1000
    view = gw.get(f"/v1/operations/{redemption}", grocer).json()["redemption"]
    ledger = gw.runtime.ledger
    assert ledger.refunded_of(bytes.fromhex(view["leaf"][2:])) == 400
    assert ledger.refunded(2) == 400 and ledger.partner(2)["redeemed"] == 400
    # Refunded points are not an issue: the grocer's allowance is untouched.
    assert ledger.partner(2)["allowance"] == 10**9
    # The Refunded event names the redemption's receipt hash.
    op = gw.get(f"/v1/operations/{first.json()['operation_id']}", grocer).json()
    receipt = gw.runtime.chain.w3.eth.get_transaction_receipt(op["tx_hash"])
    event = next(e for e in ledger.decode_logs(receipt) if e.log_index == op["log_index"])
    redeemed = gw.get(f"/v1/operations/{redemption}", grocer).json()
    assert event.name == "Refunded" and "0x" + event.args["redemptionReceiptRef"].hex() == redeemed["receipt_ref"]
    assert event.args["points"] == 250 and event.args["member"] == member["address"]
    # Nothing left to refund.
    assert _refund(gw, grocer, "RF-3", 1).json()["error"]["code"] == "refund_exceeds_redemption"
    # The grocer's settlement line: 400 redeemed at it, all 400 given back.
    line = gw.get("/v1/partners/2/statement", grocer).json()
    assert (line["redeemed"], line["refunded"], line["net_points"], line["owed_minor"]) == (400, 400, 0, 0)
    statement = gw.get("/v1/audit/settlement?from=2000-01-01&to=2100-01-01", gw.admin_key).json()
    assert statement["balanced"] and statement["net_points_total"] == 1000


def test_a_refund_the_chain_refuses_is_rejected_with_its_reason(gw: Gateway, shops: tuple[str, str]) -> None:
    """The gateway's count is checked again by the contract: a refund row forged past the
    gateway's check (here, the refunds' rows are marked rejected behind its back) is refused
    on-chain, `refund_exceeds_redemption`."""
    _, grocer = shops
    _redeem(gw, grocer, "X-1", 100)
    gw.settle()
    assert _refund(gw, grocer, "RF-1", 100).status_code == 202
    gw.settle()
    with gw.runtime.writes.begin() as session:
        session.execute(sa.text("UPDATE operations SET status = 'rejected' WHERE kind = 'refund'"))
    again = _refund(gw, grocer, "RF-2", 60)
    assert again.status_code == 202
    gw.settle()
    op = gw.get(f"/v1/operations/{again.json()['operation_id']}", grocer).json()
    assert (op["status"], op["error"]["code"]) == ("rejected", "refund_exceeds_redemption")
    assert gw.get("/v1/members/card-1", grocer).json()["balance"] == 1000


def test_a_self_custody_partner_signs_its_refund_over_the_redemptions_leaf(gw: Gateway) -> None:
    cafe = gw.partner()["api_key"]
    grocer_key = key_for("refund-partner")
    grocer = gw.partner("FreshMart", signer_address=address_of(grocer_key))
    assert gw.post("/v1/members", cafe, {"member_id": "card-1", "pin": "1234"}).status_code == 201
    _earn(gw, cafe, "E-1", 50_000)
    gw.settle()
    redemption = _redeem(gw, grocer["api_key"], "X-1", 300)
    gw.settle()
    view = gw.get(f"/v1/operations/{redemption}", grocer["api_key"]).json()
    record = view["redemption"]
    leaf = redemption_leaf(
        partner_id=grocer["partner_id"],
        member=view["member_address"],
        receipt_ref=bytes.fromhex(view["receipt_ref"][2:]),
        points=view["points"],
        expiry_month=record["expiry_month"],
        batch_id=record["batch_id"],
        index=record["index"],
    )
    assert "0x" + leaf.hex() == record["leaf"]
    issued_at, salt = "2026-11-22T10:15:00+00:00", new_receipt_salt()
    ref = Receipt(
        kind="refund",
        partner_id=grocer["partner_id"],
        receipt_id="RF-1",
        member_id="card-1",
        points=120,
        issued_at=issued_at,
        extra={"redemption_receipt_id": "X-1", "reason": "returned"},
        salt=salt,
    ).ref()
    deadline = gw.runtime.chain.latest_timestamp() + 3600

    def signed(points: int, key: str) -> dict[str, Any]:
        message = RefundMessage(grocer["partner_id"], leaf, points, ref, 11, deadline)
        signature = sign(gw.runtime.ledger.domain, message, key).hex()
        return {
            "issued_at": issued_at,
            "receipt_salt": salt,
            "partner_signature": {"signature": signature, "nonce": 11, "deadline": deadline},
        }

    unsigned = _refund(gw, grocer["api_key"], "RF-1", 120)
    assert unsigned.json()["error"]["code"] == "signature_required"
    assert _refund(gw, grocer["api_key"], "RF-1", 120, **signed(120, key_for("x"))).json()["error"]["code"] == (
        "invalid_signature"
    )
    assert _refund(gw, grocer["api_key"], "RF-1", 121, **signed(120, grocer_key)).json()["error"]["code"] == (
        "invalid_signature"
    )
    accepted = _refund(gw, grocer["api_key"], "RF-1", 120, **signed(120, grocer_key))
    assert accepted.status_code == 202, accepted.text
    gw.settle()
    op = gw.get(f"/v1/operations/{accepted.json()['operation_id']}", grocer["api_key"]).json()
    assert (op["status"], op["points"]) == ("confirmed", 120)
    assert gw.get("/v1/members/card-1", cafe).json()["balance"] == 500 - 300 + 120
