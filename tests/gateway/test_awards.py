"""Awards (r2) through the gateway, on the embedded chain, on SQLite and PostgreSQL: managed and
self-custody partners, reason codes, refusals that change nothing, rejections on-chain,
reversals of awards, and the activity and reconciliation feeds."""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy as sa

from partners.signing import AwardMessage, Receipt, address_of, new_receipt_salt, sign
from tests.gateway.conftest import Gateway
from tests.support import key_for


def _award(gw: Gateway, key: str, **body: Any) -> Any:
    return gw.post("/v1/awards", key, {"member_id": "card-1", "receipt_id": "A-1", "points": 500, **body})


def test_a_managed_partners_award_is_issued_with_its_reason(gw: Gateway) -> None:
    bean = gw.partner()
    key = bean["api_key"]
    assert gw.post("/v1/members", key, {"member_id": "card-1", "pin": "1234"}).status_code == 201
    accepted = _award(gw, key, reason="signup", note="welcome to the coalition")
    assert accepted.status_code == 202, accepted.text
    body = accepted.json()
    assert (body["status"], body["points"], body["reason"]) == ("accepted", 500, "signup")
    gw.settle()
    op = gw.get(f"/v1/operations/{body['operation_id']}", key).json()
    assert (op["kind"], op["status"], op["points"], op["reason"]) == ("award", "confirmed", 500, "signup")
    member = gw.get("/v1/members/card-1", key).json()
    assert member["balance"] == 500 == gw.runtime.ledger.balance_of(member["address"])
    # The chain's event: the partner, the member, the receipt's hash and the reason code (4: signup).
    receipt = gw.runtime.chain.w3.eth.get_transaction_receipt(op["tx_hash"])
    event = next(e for e in gw.runtime.ledger.decode_logs(receipt) if e.log_index == op["log_index"])
    assert event.name == "Awarded"
    assert (event.args["partnerId"], event.args["member"], event.args["points"], event.args["reason"]) == (
        bean["partner_id"],
        member["address"],
        500,
        4,
    )
    assert "0x" + event.args["receiptRef"].hex() == op["receipt_ref"]
    # Awards are not qualifying points, and the allowance paid for them.
    assert gw.runtime.ledger.qualifying_points(member["address"]) == 0
    assert gw.runtime.ledger.partner(bean["partner_id"])["allowance"] == 10**9 - 500
    # The receipt document: salted (SPEC section 4, r2), with its reason and note.
    with gw.runtime.sessions() as session:
        stored = session.execute(sa.text("SELECT receipt_doc FROM receipts WHERE receipt_id = 'A-1'")).scalar_one()
    doc = json.loads(stored)
    assert len(doc["salt"]) >= 32 and doc["extra"] == {"reason": "signup", "note": "welcome to the coalition"}
    # The member's activity and the partner's reconciliation feed both list it.
    activity = gw.get("/v1/members/card-1/activity", key).json()["items"]
    assert [(o["kind"], o["points"]) for o in activity] == [("award", 500)]
    feed = gw.get(f"/v1/partners/{bean['partner_id']}/operations?kind=award", key).json()["items"]
    assert [(o["receipt_id"], o["status"]) for o in feed] == [("A-1", "confirmed")]


@pytest.mark.parametrize(
    "body, status, code",
    [
        ({"reason": "birthday"}, 422, "validation_error"),
        ({"reason": "bonus", "points": 0}, 422, "validation_error"),
        ({"reason": "bonus", "points": 2**48}, 422, "validation_error"),
        ({"reason": "bonus", "points": "5"}, 422, "validation_error"),
        ({"reason": "bonus", "member_id": "nobody"}, 404, "unknown_member"),
        ({"reason": "bonus", "note": "x" * 501}, 422, "validation_error"),
    ],
)
def test_bad_awards_are_refused_and_change_nothing(gw: Gateway, body: dict[str, Any], status: int, code: str) -> None:
    key = gw.partner()["api_key"]
    gw.post("/v1/members", key, {"member_id": "card-1", "pin": "1234"})
    refused = _award(gw, key, **body)
    assert (refused.status_code, refused.json()["error"]["code"]) == (status, code), refused.text
    assert gw.count("operations") == 0


def test_awards_are_for_partner_keys_and_receipts_are_unique(gw: Gateway) -> None:
    key = gw.partner()["api_key"]
    gw.post("/v1/members", key, {"member_id": "card-1", "pin": "1234"})
    assert _award(gw, gw.admin_key, reason="bonus").status_code == 403
    assert gw.client.post("/v1/awards", json={}).status_code == 401
    assert _award(gw, key, reason="bonus").status_code == 202
    again = _award(gw, key, reason="goodwill")
    assert (again.status_code, again.json()["error"]["code"]) == (409, "duplicate_receipt")
    # An earn may carry the same receipt id: the uniqueness is per kind.
    earn = {"member_id": "card-1", "receipt_id": "A-1", "amount_minor": 1000, "currency": "EUR"}
    assert gw.post("/v1/earn", key, earn).status_code == 202
    assert gw.count("operations") == 2


def test_an_award_beyond_the_allowance_is_rejected_on_chain(gw: Gateway) -> None:
    key = gw.partner(allowance=100)["api_key"]
    gw.post("/v1/members", key, {"member_id": "card-1", "pin": "1234"})
    body = _award(gw, key, reason="goodwill", points=101).json()
    gw.settle()
    op = gw.get(f"/v1/operations/{body['operation_id']}", key).json()
    assert (op["status"], op["error"]["code"]) == ("rejected", "allowance_exceeded")
    assert gw.get("/v1/members/card-1", key).json()["balance"] == 0


def _signed_award(gw: Gateway, partner: dict[str, Any], signer: str, points: int, nonce: int) -> dict[str, Any]:
    member = gw.get("/v1/members/card-1", partner["api_key"]).json()["address"]
    issued_at, salt = "2026-11-22T10:15:00+00:00", new_receipt_salt()
    ref = Receipt(
        kind="award",
        partner_id=partner["partner_id"],
        receipt_id="A-1",
        member_id="card-1",
        points=points,
        issued_at=issued_at,
        extra={"reason": "referral"},
        salt=salt,
    ).ref()
    deadline = gw.runtime.chain.latest_timestamp() + 3600
    message = AwardMessage(partner["partner_id"], member, points, 3, ref, nonce, deadline)
    return {
        "reason": "referral",
        "points": points,
        "issued_at": issued_at,
        "receipt_salt": salt,
        "partner_signature": {
            "signature": sign(gw.runtime.ledger.domain, message, signer).hex(),
            "nonce": nonce,
            "deadline": deadline,
        },
    }


def test_a_self_custody_partners_award_carries_its_own_signature(gw: Gateway) -> None:
    partner_key = key_for("award-partner")
    partner = gw.partner(signer_address=address_of(partner_key))
    key = partner["api_key"]
    gw.post("/v1/members", key, {"member_id": "card-1", "pin": "1234"})
    unsigned = _award(gw, key, reason="referral")
    assert (unsigned.status_code, unsigned.json()["error"]["code"]) == (422, "signature_required")
    forged = _award(gw, key, **_signed_award(gw, partner, key_for("someone-else"), 250, 7))
    assert (forged.status_code, forged.json()["error"]["code"]) == (422, "invalid_signature")
    # Signed for 250 points, asked for 251: the signature does not cover it.
    tampered = {**_signed_award(gw, partner, partner_key, 250, 7), "points": 251}
    assert _award(gw, key, **tampered).json()["error"]["code"] == "invalid_signature"
    assert gw.count("operations") == 0
    accepted = _award(gw, key, **_signed_award(gw, partner, partner_key, 250, 7))
    assert accepted.status_code == 202, accepted.text
    gw.settle()
    op = gw.get(f"/v1/operations/{accepted.json()['operation_id']}", key).json()
    assert (op["status"], op["points"]) == ("confirmed", 250)
    assert gw.get("/v1/members/card-1", key).json()["balance"] == 250


def test_an_award_is_reversed_by_points_and_the_reversal_reports_what_it_took(gw: Gateway) -> None:
    key = gw.partner()["api_key"]
    gw.post("/v1/members", key, {"member_id": "card-1", "pin": "1234"})
    _award(gw, key, reason="correction", points=300)
    early = gw.post("/v1/reversals", key, {"receipt_id": "A-1", "points": 100, "reason": "too generous"})
    assert (early.status_code, early.json()["error"]["code"]) == (409, "earn_not_confirmed")
    gw.settle()
    by_amount = gw.post("/v1/reversals", key, {"receipt_id": "A-1", "amount_minor": 100, "reason": "x"})
    assert (by_amount.status_code, by_amount.json()["error"]["code"]) == (422, "validation_error")
    too_many = gw.post("/v1/reversals", key, {"receipt_id": "A-1", "points": 301, "reason": "x"})
    assert too_many.json()["error"]["code"] == "reversal_exceeds_earn"
    reversal = gw.post(
        "/v1/reversals", key, {"receipt_id": "A-1", "refund_id": "A-1/rev", "points": 120, "reason": "too generous"}
    )
    assert reversal.status_code == 202, reversal.text
    pending = gw.get(f"/v1/operations/{reversal.json()['operation_id']}", key).json()
    assert (pending["points_taken"], pending["debt"]) == (None, None)
    gw.settle()
    op = gw.get(f"/v1/operations/{reversal.json()['operation_id']}", key).json()
    assert (op["status"], op["points"], op["points_taken"], op["debt"]) == ("confirmed", 120, 120, 0)
    assert gw.get("/v1/members/card-1", key).json()["balance"] == 180
