"""The v1 API end to end on the embedded chain, on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway.app.bootstrap import open_runtime
from gateway.submitter.loop import Submitter
from partners.signing import EarnMessage, Receipt, RedeemMessage, address_of, sign
from tests.gateway.conftest import Gateway, make_settings
from tests.support import key_for


def test_init_writes_a_private_admin_key_and_a_deployment_record(gw: Gateway, tmp_path: Path) -> None:
    key_file = tmp_path / "data" / "admin.key"
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    record = json.loads((tmp_path / "data" / "deployment.json").read_text())
    ledger = gw.client.get("/v1/ledger").json()
    assert (ledger["address"], ledger["chain_id"]) == (record["address"], record["chain_id"])
    assert any(item.get("name") == "Earned" for item in ledger["abi"])
    # Keys are stored hashed only: the plain key appears nowhere in the database.
    with gw.runtime.sessions() as session:
        stored = [row[0] for row in session.execute(sa.text("SELECT key_hash FROM api_keys"))]
    assert gw.admin_key not in stored and len(stored) == 1


def test_earn_is_accepted_then_confirmed_on_chain(gw: Gateway) -> None:
    partner = gw.partner()
    key = partner["api_key"]
    assert gw.post("/v1/members", key, {"member_id": "card-1", "pin": "1234"}).status_code == 201
    accepted = gw.post(
        "/v1/earn", key, {"member_id": "card-1", "receipt_id": "R-1", "amount_minor": 1250, "currency": "EUR"}
    )
    assert accepted.status_code == 202, accepted.text
    body = accepted.json()
    assert (body["status"], body["points"]) == ("accepted", 12)
    assert gw.get(f"/v1/operations/{body['operation_id']}", key).json()["status"] == "accepted"
    gw.settle()
    op = gw.get(f"/v1/operations/{body['operation_id']}", key).json()
    # A UTC timestamp with its zone on every database (SQLite keeps none; the gateway adds it).
    assert datetime.fromisoformat(op["accepted_at"]).utcoffset() == timedelta(0)
    assert op["status"] == "confirmed" and op["tx_hash"] and op["block_number"] and op["log_index"] is not None
    member = gw.get("/v1/members/card-1", key).json()
    assert member["balance"] == 12 == gw.runtime.ledger.balance_of(member["address"])
    assert member["block_number"] >= op["block_number"]
    receipt = gw.runtime.chain.w3.eth.get_transaction_receipt(op["tx_hash"])
    earned = [e for e in gw.runtime.ledger.decode_logs(receipt) if e.name == "Earned"]
    assert [e.args["receiptRef"] for e in earned] == [bytes.fromhex(body["receipt_ref"][2:])]


def test_many_earns_ride_in_one_batch(gw: Gateway) -> None:
    key = gw.partner()["api_key"]
    gw.post("/v1/members", key, {"member_id": "card-1", "pin": "1234"})
    ids = [
        gw.post(
            "/v1/earn",
            key,
            {"member_id": "card-1", "receipt_id": f"R-{i}", "amount_minor": 100 * (i + 1), "currency": "EUR"},
        ).json()["operation_id"]
        for i in range(25)
    ]
    gw.settle()
    ops = [gw.get(f"/v1/operations/{i}", key).json() for i in ids]
    assert {o["status"] for o in ops} == {"confirmed"}
    assert len({o["tx_hash"] for o in ops}) == 1
    assert gw.get("/v1/members/card-1", key).json()["balance"] == sum(range(1, 26))


def test_idempotency_and_duplicate_receipts(gw: Gateway) -> None:
    key = gw.partner()["api_key"]
    gw.post("/v1/members", key, {"member_id": "card-1", "pin": "1234"})
    body = {"member_id": "card-1", "receipt_id": "R-1", "amount_minor": 1000, "currency": "EUR"}
    first = gw.post("/v1/earn", key, body, idempotency_key="k-1")
    again = gw.post("/v1/earn", key, body, idempotency_key="k-1")
    assert first.status_code == again.status_code == 202 and first.json() == again.json()
    other = gw.post("/v1/earn", key, {**body, "amount_minor": 999}, idempotency_key="k-1")
    assert (other.status_code, other.json()["error"]["code"]) == (422, "idempotency_mismatch")
    duplicate = gw.post("/v1/earn", key, body, idempotency_key="k-2")
    assert (duplicate.status_code, duplicate.json()["error"]["code"]) == (409, "duplicate_receipt")
    assert gw.count("operations") == 1


def test_concurrent_identical_requests_make_one_operation(gw: Gateway) -> None:
    key = gw.partner()["api_key"]
    gw.post("/v1/members", key, {"member_id": "card-1", "pin": "1234"})
    body = {"member_id": "card-1", "receipt_id": "R-race", "amount_minor": 5000, "currency": "EUR"}
    with ThreadPoolExecutor(max_workers=10) as pool:
        responses = list(pool.map(lambda _: gw.post("/v1/earn", key, body, idempotency_key="race"), range(50)))
    assert {r.status_code for r in responses} == {202}
    assert len({r.json()["operation_id"] for r in responses}) == 1
    gw.settle()
    assert gw.count("operations") == 1
    assert gw.get("/v1/members/card-1", key).json()["balance"] == 50


@pytest.mark.parametrize(
    "body, status, code",
    [
        ("{not json", 400, "malformed_json"),
        ({"member_id": "card-1", "receipt_id": "R", "amount_minor": 12.5, "currency": "EUR"}, 422, "validation_error"),
        (
            {"member_id": "card-1", "receipt_id": "R", "amount_minor": "1250", "currency": "EUR"},
            422,
            "validation_error",
        ),
        ({"member_id": "card-1", "receipt_id": "R", "amount_minor": -5, "currency": "EUR"}, 422, "validation_error"),
        (
            {"member_id": "card-1", "receipt_id": "R", "amount_minor": 2**256, "currency": "EUR"},
            422,
            "validation_error",
        ),
        ({"member_id": "card-1", "receipt_id": "R", "amount_minor": 1250, "currency": "GBP"}, 422, "wrong_currency"),
        ({"member_id": "nobody", "receipt_id": "R", "amount_minor": 1250, "currency": "EUR"}, 404, "unknown_member"),
        ({"member_id": "card-1", "receipt_id": "R", "amount_minor": 50, "currency": "EUR"}, 422, "zero_points"),
        (
            {"member_id": "card-1", "receipt_id": "R", "amount_minor": 1250, "currency": "EUR", "extra": 1},
            422,
            "validation_error",
        ),
    ],
)
def test_bad_earns_are_refused_and_change_nothing(gw: Gateway, body: object, status: int, code: str) -> None:
    key = gw.partner()["api_key"]
    gw.post("/v1/members", key, {"member_id": "card-1", "pin": "1234"})
    if isinstance(body, str):
        response = gw.client.post(
            "/v1/earn", content=body, headers={**gw.headers(key), "Content-Type": "application/json"}
        )
    else:
        response = gw.post("/v1/earn", key, body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"]
    assert "Traceback" not in response.text
    assert gw.count("operations") == 0
    gw.settle()
    assert gw.count("batches") == 0


def test_authentication_roles_and_partner_isolation(gw: Gateway) -> None:
    a = gw.partner("A")["api_key"]
    b = gw.partner("B")["api_key"]
    gw.post("/v1/members", a, {"member_id": "card-1", "pin": "1234"})
    op = gw.post(
        "/v1/earn", a, {"member_id": "card-1", "receipt_id": "R-1", "amount_minor": 1000, "currency": "EUR"}
    ).json()["operation_id"]
    assert gw.client.post("/v1/earn", json={}).json()["error"]["code"] == "missing_api_key"
    assert gw.post("/v1/earn", "lk_wrong", {}).status_code == 401
    wrong_role = gw.post(
        "/v1/partners",
        a,
        {"name": "X", "currency": "EUR", "earn_rate": {"points": 1, "per_minor_units": 1}, "allowance": 1},
    )
    assert (wrong_role.status_code, wrong_role.json()["error"]["code"]) == (403, "wrong_role")
    assert gw.post("/v1/earn", gw.admin_key, {}).status_code == 403
    assert gw.get(f"/v1/operations/{op}", b).status_code == 404  # another partner's operation
    assert gw.get("/v1/members/card-1/activity", b).json()["items"] == []
    assert len(gw.get("/v1/members/card-1/activity", a).json()["items"]) == 1
    assert gw.get(f"/v1/operations/{op}", gw.admin_key).status_code == 200
    # revoked keys stop working
    created = gw.post("/v1/api-keys", gw.admin_key, {"role": "auditor"}).json()
    assert gw.get(f"/v1/operations/{op}", created["api_key"]).status_code == 200
    assert gw.client.delete(f"/v1/api-keys/{created['key_id']}", headers=gw.headers(gw.admin_key)).status_code == 204
    assert gw.get(f"/v1/operations/{op}", created["api_key"]).status_code == 401


def test_oversized_body_is_refused(gw: Gateway) -> None:
    key = gw.partner()["api_key"]
    response = gw.client.post(
        "/v1/earn", content=b"{" + b" " * 70_000 + b"}", headers={**gw.headers(key), "Content-Type": "application/json"}
    )
    assert (response.status_code, response.json()["error"]["code"]) == (413, "payload_too_large")

    def chunked() -> Iterator[bytes]:  # no Content-Length: the limit applies while it streams
        yield b'{"member_id": "'
        yield from (b"x" * 1024 for _ in range(100))
        yield b'"}'

    response = gw.client.post(
        "/v1/earn", content=chunked(), headers={**gw.headers(key), "Content-Type": "application/json"}
    )
    assert (response.status_code, response.json()["error"]["code"]) == (413, "payload_too_large")
    assert gw.count("operations") == 0


def test_custodial_redemption_needs_the_pin_and_locks_after_five_failures(gw: Gateway) -> None:
    key = gw.partner()["api_key"]
    gw.post("/v1/members", key, {"member_id": "card-1", "pin": "1234"})
    gw.post("/v1/earn", key, {"member_id": "card-1", "receipt_id": "R-1", "amount_minor": 10_000, "currency": "EUR"})
    gw.settle()

    def redeem(receipt: str, pin: str, points: int = 10) -> object:
        return gw.post(
            "/v1/redemptions",
            key,
            {"member_id": "card-1", "receipt_id": receipt, "points": points, "authorization": {"pin": pin}},
        )

    too_much = redeem("X-0", "1234", 1_000)
    assert (too_much.status_code, too_much.json()["error"]["code"]) == (409, "insufficient_points")
    ok = redeem("X-1", "1234")
    assert ok.status_code == 202, ok.text
    gw.settle()
    assert gw.get("/v1/members/card-1", key).json()["balance"] == 90
    for i in range(5):
        wrong = redeem(f"X-w{i}", "0000")
        assert (wrong.status_code, wrong.json()["error"]["code"]) == (403, "invalid_pin")
    locked = redeem("X-2", "1234")
    assert (locked.status_code, locked.json()["error"]["code"]) == (403, "pin_locked")
    assert gw.post("/v1/members/card-1/unlock", gw.admin_key, {}).status_code == 200
    assert redeem("X-3", "1234").status_code == 202


def test_self_custody_member_signs_redemptions(gw: Gateway) -> None:
    partner = gw.partner()
    key = partner["api_key"]
    member_key = key_for("wallet-member")
    gw.post("/v1/members", key, {"member_id": "wallet-1", "address": address_of(member_key)})
    gw.post("/v1/earn", key, {"member_id": "wallet-1", "receipt_id": "R-1", "amount_minor": 10_000, "currency": "EUR"})
    gw.settle()
    issued_at = "2026-11-22T10:00:00+00:00"
    receipt = Receipt(
        kind="redemption",
        partner_id=partner["partner_id"],
        receipt_id="W-1",
        member_id="wallet-1",
        points=30,
        issued_at=issued_at,
    )
    message = RedeemMessage(address_of(member_key), partner["partner_id"], 30, receipt.ref(), 77, 2**40)
    signature = sign(gw.runtime.ledger.domain, message, member_key).hex()
    body = {
        "member_id": "wallet-1",
        "receipt_id": "W-1",
        "points": 30,
        "issued_at": issued_at,
        "authorization": {"signature": signature, "nonce": 77, "deadline": 2**40},
    }
    forged = {
        **body,
        "authorization": {
            **body["authorization"],  # type: ignore[dict-item]
            "signature": sign(gw.runtime.ledger.domain, message, key_for("x")).hex(),
        },
    }
    refused = gw.post("/v1/redemptions", key, forged)
    assert (refused.status_code, refused.json()["error"]["code"]) == (422, "invalid_signature")
    accepted = gw.post("/v1/redemptions", key, body)
    assert accepted.status_code == 202, accepted.text
    gw.settle()
    assert gw.get(f"/v1/operations/{accepted.json()['operation_id']}", key).json()["status"] == "confirmed"
    assert gw.get("/v1/members/wallet-1", key).json()["balance"] == 70


def test_self_custody_partner_signs_its_earns(gw: Gateway) -> None:
    partner_key = key_for("own-key-partner")
    partner = gw.partner(signer_address=address_of(partner_key))
    assert partner["managed"] is False
    key = partner["api_key"]
    member = gw.post("/v1/members", key, {"member_id": "card-9", "pin": "9999"}).json()
    issued_at = "2026-11-22T11:00:00+00:00"
    receipt = Receipt(
        kind="earn",
        partner_id=partner["partner_id"],
        receipt_id="S-1",
        member_id="card-9",
        amount_minor=4200,
        currency="EUR",
        issued_at=issued_at,
    )
    message = EarnMessage(partner["partner_id"], member["address"], 4200, receipt.ref(), 5, 2**40)
    body = {
        "member_id": "card-9",
        "receipt_id": "S-1",
        "amount_minor": 4200,
        "currency": "EUR",
        "issued_at": issued_at,
        "partner_signature": {
            "signature": sign(gw.runtime.ledger.domain, message, partner_key).hex(),
            "nonce": 5,
            "deadline": 2**40,
        },
    }
    unsigned = gw.post("/v1/earn", key, {k: v for k, v in body.items() if k != "partner_signature"})
    assert unsigned.json()["error"]["code"] == "signature_required"
    wrong = gw.post("/v1/earn", key, {**body, "amount_minor": 4300})  # the signature covers the amount
    assert wrong.json()["error"]["code"] == "invalid_signature"
    accepted = gw.post("/v1/earn", key, body)
    assert accepted.status_code == 202, accepted.text
    gw.settle()
    assert gw.get("/v1/members/card-9", key).json()["balance"] == 42


def test_reversal_is_pro_rata_and_capped(gw: Gateway) -> None:
    key = gw.partner()["api_key"]
    gw.post("/v1/members", key, {"member_id": "card-1", "pin": "1234"})
    gw.post("/v1/earn", key, {"member_id": "card-1", "receipt_id": "R-1", "amount_minor": 10_000, "currency": "EUR"})
    early = gw.post("/v1/reversals", key, {"receipt_id": "R-1", "points": 5, "reason": "too soon"})
    assert early.json()["error"]["code"] == "earn_not_confirmed"
    gw.settle()
    refund = gw.post("/v1/reversals", key, {"receipt_id": "R-1", "amount_minor": 2_500, "reason": "returned a mug"})
    assert (refund.status_code, refund.json()["points"]) == (202, 25)
    over = gw.post("/v1/reversals", key, {"receipt_id": "R-1", "refund_id": "RF-2", "points": 76, "reason": "x"})
    assert (over.status_code, over.json()["error"]["code"]) == (422, "reversal_exceeds_earn")
    assert gw.post("/v1/reversals", key, {"receipt_id": "nope", "points": 1, "reason": "x"}).status_code == 404
    gw.settle()
    op = gw.get(f"/v1/operations/{refund.json()['operation_id']}", key).json()
    assert op["status"] == "confirmed"
    assert gw.get("/v1/members/card-1", key).json()["balance"] == 75


def test_rejected_on_chain_is_reported_with_the_decoded_reason(gw: Gateway) -> None:
    partner = gw.partner()
    key = partner["api_key"]
    gw.post("/v1/members", key, {"member_id": "card-1", "pin": "1234"})
    # The operator suspends the partner on-chain after the earn was accepted.
    accepted = gw.post(
        "/v1/earn", key, {"member_id": "card-1", "receipt_id": "R-1", "amount_minor": 1000, "currency": "EUR"}
    ).json()
    gw.runtime.ledger.call(gw.runtime.operator, "setPartnerActive", partner["partner_id"], False)
    gw.settle()
    op = gw.get(f"/v1/operations/{accepted['operation_id']}", key).json()
    assert op["status"] == "rejected"
    assert op["error"]["code"] == "partner_suspended"


def test_accepted_operations_survive_a_restart_and_apply_once(tmp_path: Path, database_url: str | None) -> None:
    data = tmp_path / "data"
    settings = make_settings(database_url)
    runtime = open_runtime(settings, data_dir=data, log=False)
    from fastapi.testclient import TestClient

    from gateway.api.main import create_app

    admin = (data / "admin.key").read_text().strip()
    with TestClient(create_app(runtime, run_submitter=False)) as client:
        h = {"Authorization": f"Bearer {admin}"}
        key = client.post(
            "/v1/partners",
            headers=h,
            json={
                "name": "P",
                "currency": "EUR",
                "earn_rate": {"points": 1, "per_minor_units": 100},
                "allowance": 10**6,
            },
        ).json()["api_key"]
        hp = {"Authorization": f"Bearer {key}"}
        client.post("/v1/members", headers=hp, json={"member_id": "m", "pin": "1234"})
        ids = [
            client.post(
                "/v1/earn",
                headers=hp,
                json={"member_id": "m", "receipt_id": f"R{i}", "amount_minor": 1000, "currency": "EUR"},
            ).json()["operation_id"]
            for i in range(7)
        ]
        # Sign and store a batch, but "crash" before broadcasting it.
        submitter = Submitter(runtime)
        submitter._broadcast = lambda raw: None  # type: ignore[method-assign]
        submitter.submit("earn")
    runtime.close()

    runtime = open_runtime(settings, data_dir=data, log=False)
    Submitter(runtime).step()  # broadcasts the stored transaction again, then follows it
    Submitter(runtime).step()
    ledger = runtime.ledger
    with runtime.sessions() as session:
        statuses = dict(session.execute(sa.text("SELECT id, status FROM operations")).all())
        batches = session.execute(sa.text("SELECT count(*), max(nonce) FROM batches")).one()
        address = session.execute(sa.text("SELECT address FROM members")).scalar_one()
    assert {statuses[i] for i in ids} == {"confirmed"}
    assert batches[0] == 1
    assert ledger.balance_of(address) == 70
    assert ledger.partner(1)["issued"] == 70
    runtime.close()


def test_health_and_metrics(gw: Gateway) -> None:
    health = gw.client.get("/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ok" and health.json()["database"] == "ok"
    assert health.json()["submitter_running"] is False  # this fixture runs its submitter by hand
    key = gw.partner()["api_key"]
    gw.post("/v1/members", key, {"member_id": "card-1", "pin": "1234"})
    for i in range(3):
        gw.post(
            "/v1/earn", key, {"member_id": "card-1", "receipt_id": f"R{i}", "amount_minor": 1000, "currency": "EUR"}
        )
    before = gw.client.get("/metrics").text
    assert "loyalty_operations_accepted_total 3" in before and "loyalty_queue_depth 3" in before
    gw.settle()
    after = gw.client.get("/metrics").text
    assert "loyalty_operations_confirmed_total 3" in after and "loyalty_queue_depth 0" in after
    assert "loyalty_batch_size_count 1" in after and "loyalty_batch_size_sum 3" in after


def test_rate_limit_answers_429(tmp_path: Path) -> None:
    runtime = open_runtime(make_settings(None), data_dir=tmp_path / "data", log=False)
    from fastapi.testclient import TestClient

    from gateway.api.main import create_app

    admin = {"Authorization": f"Bearer {(tmp_path / 'data' / 'admin.key').read_text().strip()}"}
    with TestClient(create_app(runtime, run_submitter=False, rate_per_second=5)) as client:
        codes = [client.get("/v1/operations/nope", headers=admin).status_code for _ in range(30)]
        limited = client.get("/v1/operations/nope", headers=admin)
    runtime.close()
    assert codes[:10] == [404] * 10  # a burst of twice the rate passes
    assert 429 in codes
    assert limited.status_code == 429 and limited.json()["error"]["code"] == "rate_limited"
    assert limited.headers["Retry-After"] == "1"


def test_production_refuses_the_development_key_encryption_key(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    from gateway.core.config import Settings

    monkeypatch.setenv("LOYALTY_ENV", "production")
    monkeypatch.delenv("LOYALTY_KEY_ENCRYPTION_KEY", raising=False)
    with pytest.raises(ValidationError, match="LOYALTY_KEY_ENCRYPTION_KEY"):
        Settings()
    monkeypatch.setenv("LOYALTY_KEY_ENCRYPTION_KEY", "short")
    with pytest.raises(ValidationError, match="LOYALTY_KEY_ENCRYPTION_KEY"):
        Settings()
    monkeypatch.setenv("LOYALTY_KEY_ENCRYPTION_KEY", "x" * 40)
    assert Settings().env == "production"
