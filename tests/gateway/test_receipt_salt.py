"""Receipt documents carry a random salt (SPEC section 4, r2): the hash on-chain can no longer
be confirmed by guessing a receipt's card number, amount and time. Receipts from before the
salt keep their hashes."""

from __future__ import annotations

import re

from partners.signing import Receipt
from tests.gateway.conftest import Gateway

EARN = {"member_id": "card-1", "receipt_id": "R-1", "amount_minor": 1250, "currency": "EUR"}


def test_a_receipt_without_salt_hashes_as_before_the_salt() -> None:
    old = Receipt("earn", 1, "R-1", "card-1", 1250, "EUR", issued_at="2026-11-22T11:00:00+00:00")
    assert b"salt" not in old.canonical()  # the document revision 1 stored, byte for byte
    salted = Receipt("earn", 1, "R-1", "card-1", 1250, "EUR", issued_at="2026-11-22T11:00:00+00:00", salt="ab" * 16)
    assert b'"salt":"' + b"ab" * 16 + b'"' in salted.canonical()
    assert salted.ref() != old.ref()


def test_the_gateway_salts_what_it_signs_and_the_proof_still_matches(gw: Gateway) -> None:
    key = gw.partner()["api_key"]
    gw.post("/v1/members", key, {"member_id": "card-1", "pin": "1234"})
    gw.post("/v1/members", key, {"member_id": "card-2", "pin": "1234"})
    first = gw.post("/v1/earn", key, {**EARN, "issued_at": "2026-11-22T11:00:00+00:00"})
    same = gw.post("/v1/earn", key, {**EARN, "receipt_id": "R-2", "issued_at": "2026-11-22T11:00:00+00:00"})
    assert first.status_code == same.status_code == 202
    gw.settle()
    auditor = gw.post("/v1/api-keys", gw.admin_key, {"role": "auditor"}).json()["api_key"]
    proof = gw.get("/v1/audit/receipts/1/R-1", auditor).json()
    assert proof["matches"] is True
    salt = proof["receipt"]["salt"]
    assert re.fullmatch(r"[0-9a-f]{32}", salt)
    # Guessing every field but the salt no longer reproduces the hash on-chain.
    guess = Receipt(**{**proof["receipt"], "salt": ""})
    assert "0x" + guess.ref().hex() != proof["receipt_hash"]
    assert gw.get("/v1/audit/receipts/1/R-2", auditor).json()["receipt"]["salt"] != salt


def test_a_salt_sent_is_used_and_a_malformed_one_refused(gw: Gateway) -> None:
    key = gw.partner()["api_key"]
    gw.post("/v1/members", key, {"member_id": "card-1", "pin": "1234"})
    for bad in ["", "xyz", "AB" * 16, "ab" * 8, "ab" * 40]:
        refused = gw.post("/v1/earn", key, {**EARN, "receipt_salt": bad})
        assert refused.status_code == 422, bad
    given = "0123456789abcdef" * 2
    assert gw.post("/v1/earn", key, {**EARN, "receipt_salt": given}).status_code == 202
    gw.settle()
    auditor = gw.post("/v1/api-keys", gw.admin_key, {"role": "auditor"}).json()["api_key"]
    assert gw.get("/v1/audit/receipts/1/R-1", auditor).json()["receipt"]["salt"] == given
