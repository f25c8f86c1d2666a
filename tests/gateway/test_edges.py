"""The gateway's edges (issue 12): hostile input is refused with a 4xx in the error shape, never
a 500 and never a 202 that the chain will reject. On the embedded chain, SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from eth_utils import to_checksum_address
from fastapi.testclient import TestClient

from gateway.api.main import create_app
from gateway.app.bootstrap import open_runtime
from partners.signing import EarnMessage, Receipt, RedeemMessage, address_of, sign
from tests.gateway.conftest import Gateway, make_settings
from tests.support import key_for

ISSUED_AT = "2026-11-22T10:00:00+00:00"


def _error(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"], error


def _custodial(gw: Gateway, *, points: int = 0, name: str = "Bean & Leaf") -> str:
    key: str = gw.partner(name)["api_key"]
    assert gw.post("/v1/members", key, {"member_id": "card-1", "pin": "1234"}).status_code == 201
    if points:
        earn = {"member_id": "card-1", "receipt_id": "R-0", "amount_minor": 100 * points, "currency": "EUR"}
        assert gw.post("/v1/earn", key, earn).status_code == 202
        gw.settle()
    return key


class Wallet:
    """A self-custody member who signs redemptions."""

    def __init__(self, gw: Gateway, partner: dict[str, Any], label: str = "wallet") -> None:
        self.gw, self.partner, self.private_key = gw, partner, key_for(label)
        self.address = address_of(self.private_key)
        key = partner["api_key"]
        assert gw.post("/v1/members", key, {"member_id": label, "address": self.address}).status_code == 201
        self.member_id = label
        earn = {"member_id": label, "receipt_id": f"{label}-earn", "amount_minor": 10_000, "currency": "EUR"}
        assert gw.post("/v1/earn", key, earn).status_code == 202
        gw.settle()

    def redemption(self, receipt_id: str, *, nonce: int, deadline: int, points: int = 5) -> dict[str, Any]:
        receipt = Receipt(
            kind="redemption",
            partner_id=self.partner["partner_id"],
            receipt_id=receipt_id,
            member_id=self.member_id,
            points=points,
            issued_at=ISSUED_AT,
        )
        message = RedeemMessage(self.address, self.partner["partner_id"], points, receipt.ref(), nonce, deadline)
        return {
            "member_id": self.member_id,
            "receipt_id": receipt_id,
            "points": points,
            "issued_at": ISSUED_AT,
            "authorization": {
                "signature": sign(self.gw.runtime.ledger.domain, message, self.private_key).hex(),
                "nonce": nonce,
                "deadline": deadline,
            },
        }


def _signed_earn(
    gw: Gateway, partner: dict[str, Any], signer: str, member: dict[str, Any], receipt_id: str, **signed: int
) -> dict[str, Any]:
    receipt = Receipt(
        kind="earn",
        partner_id=partner["partner_id"],
        receipt_id=receipt_id,
        member_id=member["member_id"],
        amount_minor=4200,
        currency="EUR",
        issued_at=ISSUED_AT,
    )
    message = EarnMessage(
        partner["partner_id"], member["address"], 4200, receipt.ref(), signed["nonce"], signed["deadline"]
    )
    return {
        "member_id": member["member_id"],
        "receipt_id": receipt_id,
        "amount_minor": 4200,
        "currency": "EUR",
        "issued_at": ISSUED_AT,
        "partner_signature": {"signature": sign(gw.runtime.ledger.domain, message, signer).hex(), **signed},
    }


# Defect 1 -----------------------------------------------------------------------------------


def test_integers_the_database_cannot_hold_are_422_not_500(gw: Gateway) -> None:
    signer = key_for("own-key-partner")
    partner = gw.partner(signer_address=address_of(signer))
    key = partner["api_key"]
    member = gw.post("/v1/members", key, {"member_id": "card-9", "pin": "9999"}).json()
    # A validly signed earn whose deadline is past a BIGINT (the schema allowed up to 2**64).
    huge = _signed_earn(gw, partner, signer, member, "S-1", nonce=5, deadline=2**63)
    _error(gw.post("/v1/earn", key, huge), 422, "validation_error")
    wallet = Wallet(gw, gw.partner("Grocer"), "wallet-1")
    redemption = wallet.redemption("W-1", nonce=1, deadline=2**63)
    _error(gw.post("/v1/redemptions", wallet.partner["api_key"], redemption), 422, "validation_error")
    # A spend past a BIGINT, at a rate that keeps its points within the contract's bound.
    cheap = gw.partner("Cheap", per=2**32 - 1)["api_key"]
    gw.post("/v1/members", cheap, {"member_id": "card-2", "pin": "1234"})
    spend = {"member_id": "card-2", "receipt_id": "R-big", "amount_minor": 2**63, "currency": "EUR"}
    _error(gw.post("/v1/earn", cheap, spend), 422, "validation_error")
    for path in (
        "/v1/audit/receipts/99999999999999999999/x",
        f"/v1/audit/receipts/{2**31}/x",  # partner ids: the contract's uint32 in an INTEGER column
        f"/v1/members/card-2/activity?cursor={2**63}",
        "/v1/members/card-2/activity?cursor=9223372036854775808",
        f"/v1/partners/{2**64}/operations",
        f"/v1/partners/{2**31}/statement",
        f"/v1/partners/{2**31}/operations",
    ):
        _error(gw.get(path, gw.admin_key), 422, "validation_error")
    retry = gw.client.post(f"/v1/webhooks/w/deliveries/{2**63}/retry", headers=gw.headers(gw.admin_key))
    _error(retry, 422, "validation_error")
    # The largest values that fit are read normally (nothing there).
    _error(gw.get(f"/v1/audit/receipts/{2**31 - 1}/x", gw.admin_key), 404, "unknown_receipt")
    assert gw.get(f"/v1/members/card-2/activity?cursor={2**63 - 1}", gw.admin_key).json()["items"] == []
    assert gw.count("operations") == 1  # the wallet's earn only


# Defect 2 -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "issued_at",
    [
        "yesterday",
        "2026-11-22T10:00:00",  # no time zone
        "2026-11-22 10:00:00+00:00",  # not RFC 3339's T
        "2026-13-22T10:00:00+00:00",  # no 13th month
        "2999-01-01T00:00:00+00:00",  # the far future
        "1970-01-01T00:00:00Z",
    ],
)
def test_receipts_carry_only_a_real_issue_time(gw: Gateway, issued_at: str) -> None:
    key = _custodial(gw)
    body = {"member_id": "card-1", "receipt_id": "R-1", "amount_minor": 1250, "currency": "EUR"}
    _error(gw.post("/v1/earn", key, {**body, "issued_at": issued_at}), 422, "validation_error")
    assert gw.count("operations") == 0
    accepted = gw.post("/v1/earn", key, {**body, "issued_at": "2026-11-22T10:00:00.250Z"})
    assert accepted.status_code == 202, accepted.text


def test_issued_at_may_be_up_to_a_day_ahead(gw: Gateway) -> None:
    from datetime import UTC, datetime, timedelta

    key = _custodial(gw)
    body = {"member_id": "card-1", "amount_minor": 1250, "currency": "EUR"}
    soon = (datetime.now(UTC) + timedelta(hours=20)).isoformat()
    assert gw.post("/v1/earn", key, {**body, "receipt_id": "R-1", "issued_at": soon}).status_code == 202
    later = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    _error(gw.post("/v1/earn", key, {**body, "receipt_id": "R-2", "issued_at": later}), 422, "validation_error")


# Defects 3 and 4 ----------------------------------------------------------------------------


def test_members_that_cannot_work_are_not_enrolled(gw: Gateway) -> None:
    key = gw.partner()["api_key"]
    address = address_of(key_for("some-wallet"))
    flipped = address[:-1] + (address[-1].lower() if address[-1].isupper() else address[-1].upper())
    if not any(c.isalpha() for c in address[-1]):  # the last digit is a number: flip another letter
        i = next(i for i in range(2, 42) if address[i].isalpha())
        flipped = address[:i] + address[i].swapcase() + address[i + 1 :]
    for body in (
        {"member_id": "m-zero", "address": "0x" + "0" * 40},
        {"member_id": "m-ledger", "address": gw.runtime.ledger.address},
        {"member_id": "m-ledger-lower", "address": gw.runtime.ledger.address.lower()},
        {"member_id": "m-typo", "address": flipped},
        {"member_id": "m-both", "address": address, "pin": "1234"},
        {"member_id": ".", "pin": "1234"},
        {"member_id": "..", "pin": "1234"},
    ):
        _error(gw.post("/v1/members", key, body), 422, "validation_error")
    assert gw.count("members") == 0
    lower = gw.post("/v1/members", key, {"member_id": "m-ok", "address": address.lower()})
    assert lower.status_code == 201, lower.text  # all lowercase carries no checksum: fine
    assert lower.json()["address"] == to_checksum_address(address)
    assert gw.post("/v1/members", key, {"member_id": "...", "pin": "1234"}).status_code == 201


def test_partners_price_in_iso_4217_currencies(gw: Gateway) -> None:
    body = {"name": "X", "earn_rate": {"points": 1, "per_minor_units": 100}, "allowance": 10}
    for currency in ("ABC", "XXX", "XAU", "eur"):
        _error(gw.post("/v1/partners", gw.admin_key, {**body, "currency": currency}), 422, "validation_error")
    assert gw.count("partners") == 0
    assert gw.post("/v1/partners", gw.admin_key, {**body, "currency": "JPY"}).status_code == 201


# Defect 5 -----------------------------------------------------------------------------------


def test_the_last_admin_key_cannot_revoke_itself(gw: Gateway) -> None:
    me = gw.get("/v1/api-keys/self", gw.admin_key).json()["key_id"]
    alone = gw.client.delete(f"/v1/api-keys/{me}", headers=gw.headers(gw.admin_key))
    _error(alone, 409, "last_admin_key")
    second = gw.post("/v1/api-keys", gw.admin_key, {"role": "admin"}).json()
    assert gw.client.delete(f"/v1/api-keys/{me}", headers=gw.headers(second["api_key"])).status_code == 204
    _error(
        gw.client.delete(f"/v1/api-keys/{second['key_id']}", headers=gw.headers(second["api_key"])),
        409,
        "last_admin_key",
    )
    assert gw.get("/v1/api-keys/self", second["api_key"]).status_code == 200


def test_init_makes_an_admin_key_where_none_is_active(tmp_path: Path) -> None:
    from gateway.cli import main

    data = tmp_path / "data"
    runtime = open_runtime(make_settings(None), data_dir=data, log=False)
    old = (data / "admin.key").read_text().strip()
    with runtime.writes.begin() as session:  # as the gateway let it happen before
        session.execute(sa.text("UPDATE api_keys SET revoked_at = CURRENT_TIMESTAMP"))
    runtime.close()
    result = CliRunner().invoke(main, ["init", "--data-dir", str(data)])
    assert result.exit_code == 0, result.output
    new = (data / "admin.key").read_text().strip()
    assert new != old
    runtime = open_runtime(make_settings(None), data_dir=data, log=False)
    with TestClient(create_app(runtime, run_submitter=False)) as client:
        assert client.get("/v1/api-keys/self", headers={"Authorization": f"Bearer {new}"}).json()["role"] == "admin"
        assert client.get("/v1/api-keys/self", headers={"Authorization": f"Bearer {old}"}).status_code == 401
    runtime.close()


# Defects 6 and 8 ----------------------------------------------------------------------------


def test_an_empty_idempotency_key_is_refused(gw: Gateway) -> None:
    key = _custodial(gw)
    body = {"member_id": "card-1", "receipt_id": "R-1", "amount_minor": 1250, "currency": "EUR"}
    for blank in ("", " "):
        headers = {**gw.headers(key), "Idempotency-Key": blank}
        _error(gw.client.post("/v1/earn", json=body, headers=headers), 422, "validation_error")
    assert gw.count("operations") == 0 and gw.count("idempotency_keys") == 0
    assert gw.post("/v1/earn", key, body, idempotency_key="k-1").status_code == 202


def test_a_partner_key_without_its_partner_is_422(gw: Gateway) -> None:
    _error(gw.post("/v1/api-keys", gw.admin_key, {"role": "partner"}), 422, "validation_error")
    _error(gw.post("/v1/api-keys", gw.admin_key, {"role": "partner", "partner_id": 7}), 404, "unknown_partner")


# Defect 9 -----------------------------------------------------------------------------------


def test_member_signatures_the_chain_would_refuse_are_not_accepted(gw: Gateway) -> None:
    wallet = Wallet(gw, gw.partner())
    key = wallet.partner["api_key"]
    now = gw.runtime.chain.latest_timestamp()
    _error(
        gw.post("/v1/redemptions", key, wallet.redemption("W-0", nonce=1, deadline=now - 1)), 422, "signature_expired"
    )
    assert gw.post("/v1/redemptions", key, wallet.redemption("W-1", nonce=2, deadline=2**40)).status_code == 202
    # The same nonce while the first is on its way, then once it is on-chain.
    _error(
        gw.post("/v1/redemptions", key, wallet.redemption("W-2", nonce=2, deadline=2**40)), 409, "nonce_already_used"
    )
    gw.settle()
    assert gw.runtime.ledger.member_nonce_used(wallet.address, 2)
    _error(
        gw.post("/v1/redemptions", key, wallet.redemption("W-3", nonce=2, deadline=2**40)), 409, "nonce_already_used"
    )
    # The refused receipt ids are still free.
    assert gw.post("/v1/redemptions", key, wallet.redemption("W-0", nonce=3, deadline=2**40)).status_code == 202
    # A retry of the accepted request with its Idempotency-Key still gets its first answer.
    body = wallet.redemption("W-4", nonce=4, deadline=2**40)
    first = gw.post("/v1/redemptions", key, body, idempotency_key="w-4")
    gw.settle()
    assert gw.post("/v1/redemptions", key, body, idempotency_key="w-4").json() == first.json()
    gw.settle()
    with gw.runtime.sessions() as session:
        statuses = [s for (s,) in session.execute(sa.text("SELECT status FROM operations WHERE kind = 'redemption'"))]
    assert statuses == ["confirmed"] * 3


def test_partner_signatures_the_chain_would_refuse_are_not_accepted(gw: Gateway) -> None:
    signer = key_for("own-key-partner")
    partner = gw.partner(signer_address=address_of(signer))
    key = partner["api_key"]
    member = gw.post("/v1/members", key, {"member_id": "card-9", "pin": "9999"}).json()
    now = gw.runtime.chain.latest_timestamp()
    expired = _signed_earn(gw, partner, signer, member, "S-0", nonce=4, deadline=now)
    _error(gw.post("/v1/earn", key, expired), 422, "signature_expired")
    assert (
        gw.post("/v1/earn", key, _signed_earn(gw, partner, signer, member, "S-1", nonce=5, deadline=2**40)).status_code
        == 202
    )
    again = _signed_earn(gw, partner, signer, member, "S-2", nonce=5, deadline=2**40)
    _error(gw.post("/v1/earn", key, again), 409, "nonce_already_used")
    gw.settle()
    _error(gw.post("/v1/earn", key, again), 409, "nonce_already_used")
    assert gw.count("operations") == 1


# Defect 10 ----------------------------------------------------------------------------------


def test_one_partner_cannot_lock_a_member_out_of_the_coalition(gw: Gateway) -> None:
    a = _custodial(gw, points=100, name="A")
    b, c, d, e = (gw.partner(n)["api_key"] for n in ("B", "C", "D", "E"))

    def redeem(key: str, receipt: str, pin: str) -> Any:
        body = {"member_id": "card-1", "receipt_id": receipt, "points": 1, "authorization": {"pin": pin}}
        return gw.post("/v1/redemptions", key, body)

    for i in range(5):
        _error(redeem(a, f"A-w{i}", "0000"), 403, "invalid_pin")
    _error(redeem(a, "A-1", "1234"), 403, "pin_locked")  # locked at A...
    assert redeem(b, "B-1", "1234").status_code == 202  # ...and nowhere else
    # Guessing through many partners is still bounded: 15 wrong PINs in a row lock it everywhere.
    for key, name in ((b, "B"), (c, "C"), (d, "D")):
        for i in range(5):
            _error(redeem(key, f"{name}-x{i}", "0000"), 403, "invalid_pin")
    _error(redeem(e, "E-1", "1234"), 403, "pin_locked")
    # The admin's unlock opens every partner again.
    assert gw.post("/v1/members/card-1/unlock", gw.admin_key, {}).status_code == 200
    assert redeem(a, "A-2", "1234").status_code == 202
    assert redeem(e, "E-2", "1234").status_code == 202
