"""Member migration (r2) through the gateway, on the embedded chain, on SQLite and PostgreSQL:
a custodial member (PIN) or a self-custody member (its signature) moves everything to a new
address of its own; the member record follows; nothing crosses the migration on its way."""

from __future__ import annotations

from typing import Any

from partners.signing import MigrateMessage, address_of, sign
from tests.gateway.conftest import Gateway
from tests.support import key_for


def _earn(gw: Gateway, key: str, receipt: str, amount: int, member: str = "card-1") -> Any:
    body = {"member_id": member, "receipt_id": receipt, "amount_minor": amount, "currency": "EUR"}
    response = gw.post("/v1/earn", key, body)
    assert response.status_code == 202, response.text
    return response.json()


def _migrate(gw: Gateway, key: str, address: str, authorization: dict[str, Any], member: str = "card-1") -> Any:
    return gw.post(f"/v1/members/{member}/migrate", key, {"address": address, "authorization": authorization})


def test_a_custodial_member_moves_to_its_wallet_with_its_pin(gw: Gateway) -> None:
    key = gw.partner()["api_key"]
    assert gw.post("/v1/members", key, {"member_id": "card-1", "pin": "1234"}).status_code == 201
    _earn(gw, key, "E-1", 50_000)
    gw.settle()
    old = gw.get("/v1/members/card-1", key).json()["address"]
    wallet = address_of(key_for("card-1-wallet"))

    wrong = _migrate(gw, key, wallet, {"pin": "9999"})
    assert (wrong.status_code, wrong.json()["error"]["code"]) == (403, "invalid_pin")
    with gw.runtime.sessions() as session:
        from gateway.db.models import PinFailure

        assert session.get(PinFailure, ("card-1", 1)).failures == 1  # counted like a redemption's
    assert _migrate(gw, key, "0x" + "0" * 40, {"pin": "1234"}).json()["error"]["code"] == "validation_error"
    assert _migrate(gw, key, old, {"pin": "1234"}).json()["error"]["code"] == "validation_error"
    assert _migrate(gw, gw.admin_key, wallet, {"pin": "1234"}).status_code == 403
    assert gw.count("operations") == 1

    accepted = _migrate(gw, key, wallet, {"pin": "1234"})
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["address"] == wallet
    # While it is on its way, the member's awards and redemptions wait for it.
    award = gw.post("/v1/awards", key, {"member_id": "card-1", "receipt_id": "A-1", "points": 5, "reason": "bonus"})
    assert (award.status_code, award.json()["error"]["code"]) == (409, "migration_in_progress")
    again = _migrate(gw, key, address_of(key_for("other")), {"pin": "1234"})
    assert again.json()["error"]["code"] == "migration_in_progress"
    gw.settle()
    op = gw.get(f"/v1/operations/{accepted.json()['operation_id']}", key).json()
    assert (op["kind"], op["status"], op["points"]) == ("migration", "confirmed", 500)
    member = gw.get("/v1/members/card-1", key).json()
    assert (member["address"], member["custodial"], member["balance"]) == (wallet, False, 500)
    assert gw.runtime.ledger.balance_of(old) == 0 and gw.runtime.ledger.balance_of(wallet) == 500
    assert gw.runtime.ledger.qualifying_points(wallet) == 500  # the tier history moved too
    # Afterwards: earns go to the wallet; a redemption needs the wallet's signature, not the PIN.
    _earn(gw, key, "E-2", 1_000)
    gw.settle()
    assert gw.runtime.ledger.balance_of(wallet) == 510
    redemption = {"member_id": "card-1", "receipt_id": "X-1", "points": 10, "authorization": {"pin": "1234"}}
    assert gw.post("/v1/redemptions", key, redemption).json()["error"]["code"] == "signature_required"
    # A reversal of the earn made at the old address takes its points where they are now.
    reversal = gw.post("/v1/reversals", key, {"receipt_id": "E-1", "points": 100, "reason": "refund"})
    assert reversal.status_code == 202, reversal.text
    gw.settle()
    assert gw.get(f"/v1/operations/{reversal.json()['operation_id']}", key).json()["status"] == "confirmed"
    assert gw.runtime.ledger.balance_of(wallet) == 410


def test_a_migration_waits_for_the_members_operations_and_what_crosses_it_is_refused(gw: Gateway) -> None:
    key = gw.partner()["api_key"]
    gw.post("/v1/members", key, {"member_id": "card-1", "pin": "1234"})
    _earn(gw, key, "E-1", 10_000)
    wallet = address_of(key_for("card-1-wallet"))
    busy = _migrate(gw, key, wallet, {"pin": "1234"})
    assert (busy.status_code, busy.json()["error"]["code"]) == (409, "member_busy")
    gw.settle()
    accepted = _migrate(gw, key, wallet, {"pin": "1234"})
    assert accepted.status_code == 202
    # An earn accepted meanwhile was signed for the old address: it is refused, never sent
    # (it would land where no key can move points any more).
    crossing = _earn(gw, key, "E-2", 10_000)
    gw.settle()
    op = gw.get(f"/v1/operations/{crossing['operation_id']}", key).json()
    assert (op["status"], op["error"]["code"]) == ("rejected", "member_migrated")
    assert gw.get(f"/v1/operations/{accepted.json()['operation_id']}", key).json()["status"] == "confirmed"
    assert gw.get("/v1/members/card-1", key).json()["balance"] == 100


def test_the_new_address_must_be_fresh(gw: Gateway) -> None:
    key = gw.partner()["api_key"]
    for member in ("card-1", "card-2"):
        gw.post("/v1/members", key, {"member_id": member, "pin": "1234"})
        _earn(gw, key, f"E-{member}", 10_000, member=member)
    gw.settle()
    old_1 = gw.get("/v1/members/card-1", key).json()["address"]
    card_2 = gw.get("/v1/members/card-2", key).json()["address"]
    taken = _migrate(gw, key, card_2, {"pin": "1234"})
    assert (taken.status_code, taken.json()["error"]["code"]) == (409, "duplicate_address")
    assert _migrate(gw, key, address_of(key_for("w1")), {"pin": "1234"}).status_code == 202
    gw.settle()
    # card-1's old address is no member's any more, but the chain remembers it took part in a migration.
    in_use = _migrate(gw, key, old_1, {"pin": "1234"}, member="card-2")
    assert (in_use.status_code, in_use.json()["error"]["code"]) == (409, "address_in_use")


def test_a_self_custody_member_signs_its_migration(gw: Gateway) -> None:
    key = gw.partner()["api_key"]
    member_key = key_for("wallet-member")
    address = address_of(member_key)
    assert gw.post("/v1/members", key, {"member_id": "card-1", "address": address}).status_code == 201
    _earn(gw, key, "E-1", 20_000)
    gw.settle()
    wallet = address_of(key_for("new-wallet"))
    deadline = gw.runtime.chain.latest_timestamp() + 3600

    def authorization(signer: str, to: str = wallet, nonce: int = 5) -> dict[str, Any]:
        message = MigrateMessage(address, to, nonce, deadline)
        signature = sign(gw.runtime.ledger.domain, message, signer).hex()
        return {"signature": signature, "nonce": nonce, "deadline": deadline}

    assert _migrate(gw, key, wallet, {"pin": "1234"}).json()["error"]["code"] == "signature_required"
    forged = _migrate(gw, key, wallet, authorization(key_for("thief")))
    assert (forged.status_code, forged.json()["error"]["code"]) == (422, "invalid_signature")
    # Signed for another destination: not this one.
    other = _migrate(gw, key, wallet, authorization(member_key, to=address_of(key_for("thief"))))
    assert other.json()["error"]["code"] == "invalid_signature"
    accepted = _migrate(gw, key, wallet, authorization(member_key))
    assert accepted.status_code == 202, accepted.text
    gw.settle()
    member = gw.get("/v1/members/card-1", key).json()
    assert (member["address"], member["balance"]) == (wallet, 200)
    assert gw.runtime.ledger.member_nonce_used(address, 5)
