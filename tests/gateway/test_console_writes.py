"""The operator console's writes through the API, on the embedded chain with a 3-day notice
period: roles, every refusal (and that it changes nothing), changes under notice, cancelled
changes that never apply, signer rotation with and without the partner's signature, earn
quotes that follow the terms on-chain, and `programme.change_scheduled` to who should hear it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.api.main import create_app
from gateway.api.watch import follow
from gateway.app.bootstrap import open_runtime
from gateway.chain.ledger import Sender
from gateway.core.config import CoalitionSettings, GatewaySettings, Settings
from gateway.db.models import Partner
from partners.signing import EarnMessage, Receipt, RotateSignerMessage, address_of, sign
from tests.gateway.conftest import Gateway
from tests.gateway.test_webhooks import Receiver
from tests.support import DAY, TEST_COALITION, key_for

NOTICE = 3 * DAY
TIERS = [{"threshold": 0, "multiplier_bps": 10_000}, {"threshold": 100, "multiplier_bps": 30_000}]


def settings(database_url: str | None, **gateway: Any) -> Settings:
    coalition = CoalitionSettings(**{**TEST_COALITION.model_dump(), "notice_period_seconds": NOTICE})
    options = {"batch_window_ms": 0, "confirmations": 0, "programme_watch_seconds": 0, **gateway}
    return Settings(database_url=database_url, coalition=coalition, gateway=GatewaySettings(**options))


@pytest.fixture
def noticed(tmp_path: Path, database_url: str | None) -> Iterator[Gateway]:
    """A gateway whose ledger has a 3-day notice period (no background watch: tests step it)."""
    runtime = open_runtime(settings(database_url), data_dir=tmp_path / "data", log=False)
    app = create_app(runtime, run_submitter=False)
    admin_key = (tmp_path / "data" / "admin.key").read_text().strip()
    with TestClient(app) as client:
        yield Gateway(runtime, client, app.state.submitter, admin_key)
    runtime.close()


def travel(gw: Gateway, seconds: int) -> None:
    gw.runtime.chain.travel_to(gw.runtime.chain.latest_timestamp() + seconds)


def call(gw: Gateway, method: str, path: str, key: str, body: Any = None, idem: str | None = None) -> Any:
    return gw.client.request(method, path, json=body, headers=gw.headers(key, idem))


def error(response: Any) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


WRITES = [
    ("PATCH", "/v1/partners/1", {"earn_rate": {"points": 2, "per_minor_units": 100}}),
    ("POST", "/v1/partners/1/allowance", {"add": 10}),
    ("POST", "/v1/partners/1/suspend", None),
    ("POST", "/v1/partners/1/resume", None),
    ("POST", "/v1/partners/1/signer", {"signer_address": address_of(key_for("new-signer"))}),
    ("POST", "/v1/programme/changes", {"expiry_months": 6}),
    ("DELETE", "/v1/programme/changes/1", None),
    ("POST", "/v1/programme/changes/1/apply", None),
    ("POST", "/v1/ledger/pause", None),
    ("POST", "/v1/ledger/unpause", None),
    ("POST", "/v1/members/m-1/tier", {"tier": 1, "until": 2**40}),
]


def test_only_the_admin_writes_and_a_refusal_changes_nothing(noticed: Gateway) -> None:
    gw = noticed
    bean = gw.partner()
    auditor = gw.post("/v1/api-keys", gw.admin_key, {"role": "auditor"}).json()["api_key"]
    changes_before = gw.runtime.ledger.view("changeCount")
    for method, path, body in WRITES:
        for key in (bean["api_key"], auditor):
            assert error(call(gw, method, path, key, body)) == (403, "wrong_role"), (method, path)
        assert call(gw, method, path, "lk_nobody_x", body).status_code == 401
    assert gw.runtime.ledger.view("changeCount") == changes_before
    assert gw.runtime.ledger.partner(1)["active"] and not gw.runtime.ledger.view("paused")


def test_each_refusal_is_a_clear_error(noticed: Gateway) -> None:
    gw, admin = noticed, noticed.admin_key
    gw.partner()
    ledger = gw.runtime.ledger
    changes_before = ledger.view("changeCount")
    assert error(call(gw, "PATCH", "/v1/partners/9", admin, {"earn_rate": {"points": 2, "per_minor_units": 1}})) == (
        404,
        "unknown_partner",
    )
    assert error(call(gw, "POST", "/v1/partners/9/allowance", admin, {"add": 5})) == (404, "unknown_partner")
    assert error(call(gw, "POST", "/v1/partners/9/suspend", admin)) == (404, "unknown_partner")
    assert error(call(gw, "PATCH", "/v1/partners/1", admin, {})) == (422, "invalid_change")
    assert error(call(gw, "PATCH", "/v1/partners/1", admin, {"earn_rate": {"points": 0, "per_minor_units": 1}})) == (
        422,
        "validation_error",
    )
    assert error(call(gw, "POST", "/v1/partners/1/allowance", admin, {"add": 0})) == (422, "validation_error")
    for rows, words in [
        ([{"threshold": 5, "multiplier_bps": 10_000}], "threshold 0"),
        ([{"threshold": 0, "multiplier_bps": 10_000}, {"threshold": 0, "multiplier_bps": 12_000}], "ascend"),
        ([{"threshold": 0, "multiplier_bps": 0}], "basis points"),
        ([{"threshold": i, "multiplier_bps": 10_000} for i in range(9)], "1 to 8 rows"),
        ([], "1 to 8 rows"),
    ]:
        refused = call(gw, "POST", "/v1/programme/changes", admin, {"tiers": rows})
        assert error(refused) == (422, "invalid_tier_table"), rows
        assert words in refused.json()["error"]["message"]
    assert error(call(gw, "POST", "/v1/programme/changes", admin, {"expiry_months": 121})) == (422, "invalid_change")
    assert error(call(gw, "POST", "/v1/programme/changes", admin, {})) == (422, "invalid_change")
    assert error(call(gw, "DELETE", "/v1/programme/changes/99", admin)) == (404, "unknown_change")
    assert error(call(gw, "POST", "/v1/programme/changes/99/apply", admin)) == (404, "unknown_change")
    assert error(call(gw, "POST", "/v1/ledger/unpause", admin)) == (409, "not_paused")
    assert error(call(gw, "POST", "/v1/members/nobody/tier", admin, {"tier": 1, "until": 2**40})) == (
        404,
        "unknown_member",
    )
    gw.post("/v1/members", gw.partner("Grocer")["api_key"], {"member_id": "m-1", "pin": "1234"})
    assert error(call(gw, "POST", "/v1/members/m-1/tier", admin, {"tier": 3, "until": 2**40})) == (422, "invalid_tier")
    assert error(call(gw, "POST", "/v1/members/m-1/tier", admin, {"tier": 1, "until": 5})) == (422, "invalid_change")
    same = call(gw, "POST", "/v1/partners/1/signer", admin, {"signer_address": ledger.partner(1)["signer"]})
    assert error(same) == (422, "invalid_change")
    unsigned = {"signer_address": address_of(key_for("x")), "signature": "0x" + "11" * 64}
    assert error(call(gw, "POST", "/v1/partners/1/signer", admin, unsigned)) == (422, "validation_error")
    # Nothing above reached the chain.
    assert ledger.view("changeCount") == changes_before and ledger.view("expiryMonths") == 12

    paused = call(gw, "POST", "/v1/ledger/pause", admin)
    assert paused.status_code == 200 and paused.json()["paused"] is True and ledger.view("paused")
    assert error(call(gw, "POST", "/v1/ledger/pause", admin)) == (409, "already_paused")
    assert call(gw, "POST", "/v1/ledger/unpause", admin).json()["paused"] is False and not ledger.view("paused")

    suspended = call(gw, "POST", "/v1/partners/1/suspend", admin)
    assert suspended.json() == {**suspended.json(), "partner_id": 1, "active": False}
    assert not ledger.partner(1)["active"]
    assert call(gw, "POST", "/v1/partners/1/resume", admin).json()["active"] is True and ledger.partner(1)["active"]

    assigned = call(gw, "POST", "/v1/members/m-1/tier", admin, {"tier": 1, "until": 2**40})
    assert assigned.status_code == 200, assigned.text
    assert (assigned.json()["assigned_tier"], assigned.json()["tier"]) == (1, 1)
    assert gw.get("/v1/members/m-1", admin).json()["tier"] == "Silver"  # tier 1 of the table


def test_changes_wait_for_the_notice_period_and_a_cancelled_one_never_applies(noticed: Gateway) -> None:
    gw, admin, ledger = noticed, noticed.admin_key, noticed.runtime.ledger
    gw.partner()
    scheduled = call(gw, "POST", "/v1/programme/changes", admin, {"tiers": TIERS, "expiry_months": 24})
    assert scheduled.status_code == 202, scheduled.text
    tiers, expiry = scheduled.json()["changes"]
    assert (tiers["kind"], tiers["state"], tiers["partner_id"]) == ("tiers", "pending", None)
    assert tiers["terms"] == {"tiers": TIERS} and expiry["terms"] == {"expiry_months": 24}
    assert abs(tiers["effective_at"] - gw.runtime.chain.latest_timestamp() - NOTICE) <= 2
    assert NOTICE - 5 <= tiers["seconds_left"] <= NOTICE and tiers["due"] is False

    early = call(gw, "POST", f"/v1/programme/changes/{tiers['change_id']}/apply", admin)
    assert error(early) == (409, "change_not_due")
    assert early.json()["error"]["effective_at"] == tiers["effective_at"]

    cancelled = call(gw, "DELETE", f"/v1/programme/changes/{tiers['change_id']}", admin)
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    again = call(gw, "DELETE", f"/v1/programme/changes/{tiers['change_id']}", admin)
    assert error(again) == (409, "change_not_pending")

    listed = {c["change_id"]: c for c in gw.get("/v1/programme", admin).json()["changes"]}
    assert listed[tiers["change_id"]]["state"] == "cancelled" and listed[expiry["change_id"]]["state"] == "pending"

    travel(gw, NOTICE + 1)
    step = gw.client.app.state.programme_watch.step(apply_due=True)  # type: ignore[attr-defined]
    applied = {c["change_id"] for c in step.applied}
    assert expiry["change_id"] in applied and tiers["change_id"] not in applied  # the watch applied the due one
    refused = call(gw, "POST", f"/v1/programme/changes/{tiers['change_id']}/apply", admin)
    assert error(refused) == (409, "change_not_pending")
    assert ledger.view("expiryMonths") == 24
    assert [tuple(t) for t in ledger.view("tiers")] == [(t.threshold, t.multiplier_bps) for t in TEST_COALITION.tiers]


def _earn(gw: Gateway, key: str, receipt: str, amount: int, signed_by: str | None = None) -> Any:
    body: dict[str, Any] = {"member_id": "m-1", "receipt_id": receipt, "amount_minor": amount, "currency": "EUR"}
    if signed_by is not None:
        issued_at = "2026-11-22T11:00:00+00:00"
        address = gw.get("/v1/members/m-1", key).json()["address"]
        pid = gw.get("/v1/api-keys/self", key).json()["partner_id"]
        ref = Receipt("earn", pid, receipt, "m-1", amount, "EUR", issued_at=issued_at).ref()
        nonce = int(time.time_ns() % 2**40)
        message = EarnMessage(pid, address, amount, ref, nonce, 2**40)
        signature = sign(gw.runtime.ledger.domain, message, signed_by).hex()
        body |= {
            "issued_at": issued_at,
            "partner_signature": {"signature": signature, "nonce": nonce, "deadline": 2**40},
        }
    return gw.post("/v1/earn", key, body)


def test_quotes_follow_the_rate_and_tiers_on_chain_not_the_settings(noticed: Gateway) -> None:
    gw, admin, runtime = noticed, noticed.admin_key, noticed.runtime
    bean = gw.partner()
    gw.post("/v1/members", bean["api_key"], {"member_id": "m-1", "pin": "1234"})
    travel(gw, NOTICE + 1)  # the new partner issues after the notice period
    first = _earn(gw, bean["api_key"], "R-1", 10_000)
    assert first.json()["points"] == 100  # 1 per 100 minor units, base tier
    gw.settle()

    rate = call(
        gw, "PATCH", f"/v1/partners/{bean['partner_id']}", admin, {"earn_rate": {"points": 3, "per_minor_units": 100}}
    )
    tiers = call(gw, "POST", "/v1/programme/changes", admin, {"tiers": TIERS})
    assert rate.status_code == 202 and tiers.status_code == 202
    assert _earn(gw, bean["api_key"], "R-2", 1_000).json()["points"] == 10  # nothing applied yet
    gw.settle()
    travel(gw, NOTICE + 1)
    assert (
        call(gw, "POST", f"/v1/programme/changes/{rate.json()['changes'][0]['change_id']}/apply", admin).status_code
        == 200
    )
    # The tier table applies behind this gateway's back (anyone may apply a due change): the
    # programme watch sees it and the next quote follows.
    runtime.ledger.apply_change(
        Sender(runtime.chain.w3, runtime.chain.dev_keys[5]), tiers.json()["changes"][0]["change_id"]
    )
    gw.client.app.state.programme_watch.step()  # type: ignore[attr-defined]
    quote = _earn(gw, bean["api_key"], "R-3", 1_000)
    assert quote.json()["points"] == 90  # 3 per 100, at 3x: member's 110 qualifying points make tier 1
    gw.settle()
    confirmed = gw.get(f"/v1/operations/{quote.json()['operation_id']}", bean["api_key"]).json()
    assert (confirmed["status"], confirmed["points"]) == ("confirmed", 90)
    with runtime.sessions() as session:
        row = session.get(Partner, bean["partner_id"])
        assert row is not None and (row.rate_points, row.rate_per_minor_units) == (3, 100)


def test_allowance_top_up_and_its_idempotency_key(noticed: Gateway) -> None:
    gw, admin, ledger = noticed, noticed.admin_key, noticed.runtime.ledger
    gw.partner()
    before = ledger.partner(1)["allowance"]
    added = call(gw, "POST", "/v1/partners/1/allowance", admin, {"add": 500}, idem="top-up-1")
    assert added.status_code == 200, added.text
    assert added.json() == {**added.json(), "allowance_before": before, "allowance_left": before + 500, "added": 500}
    repeated = call(gw, "POST", "/v1/partners/1/allowance", admin, {"add": 500}, idem="top-up-1")
    assert repeated.json() == added.json() and ledger.partner(1)["allowance"] == before + 500
    other = call(gw, "POST", "/v1/partners/1/allowance", admin, {"add": 7}, idem="top-up-1")
    assert error(other) == (422, "idempotency_mismatch") and ledger.partner(1)["allowance"] == before + 500
    too_much = call(gw, "POST", "/v1/partners/1/allowance", admin, {"add": 2**128 - 1})
    assert error(too_much) == (422, "invalid_change")


def test_signer_rotation_with_the_partners_signature_or_under_notice(noticed: Gateway) -> None:
    gw, admin, ledger = noticed, noticed.admin_key, noticed.runtime.ledger
    old_key, new_key = key_for("rotating-old"), key_for("rotating-new")
    own = gw.partner("Self custody", signer_address=address_of(old_key))
    managed = gw.partner("Managed")
    gw.post("/v1/members", own["api_key"], {"member_id": "m-1", "pin": "1234"})
    travel(gw, NOTICE + 1)

    # With the current key's signature: at once, and the gateway checks the new key from then on.
    message = RotateSignerMessage(own["partner_id"], address_of(new_key), 7, 2**40)
    forged = sign(ledger.domain, message, key_for("someone else")).hex()
    body = {"signer_address": address_of(new_key), "nonce": 7, "deadline": 2**40}
    refused = call(gw, "POST", f"/v1/partners/{own['partner_id']}/signer", admin, {**body, "signature": forged})
    assert error(refused) == (422, "invalid_signature") and ledger.partner(own["partner_id"])["signer"] == address_of(
        old_key
    )
    signature = sign(ledger.domain, message, old_key).hex()
    rotated = call(gw, "POST", f"/v1/partners/{own['partner_id']}/signer", admin, {**body, "signature": signature})
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["rotated"] is True and ledger.partner(own["partner_id"])["signer"] == address_of(new_key)
    assert error(_earn(gw, own["api_key"], "S-1", 500, signed_by=old_key)) == (422, "invalid_signature")
    assert _earn(gw, own["api_key"], "S-2", 500, signed_by=new_key).status_code == 202

    # Without: scheduled; refused before the notice period ends; then in force, and the
    # gateway no longer signs for the partner with the key it kept.
    lost = address_of(key_for("managed-new"))
    scheduled = call(gw, "POST", f"/v1/partners/{managed['partner_id']}/signer", admin, {"signer_address": lost})
    assert scheduled.status_code == 202 and scheduled.json()["rotated"] is False
    change = scheduled.json()["change"]
    assert (change["kind"], change["state"], change["partner_id"]) == ("signer", "pending", managed["partner_id"])
    travel(gw, NOTICE - 60)
    apply = f"/v1/programme/changes/{change['change_id']}/apply"
    assert error(call(gw, "POST", apply, admin)) == (409, "change_not_due")
    assert ledger.partner(managed["partner_id"])["signer"] == managed["signer_address"]
    travel(gw, 120)
    applied = call(gw, "POST", apply, admin)
    assert applied.status_code == 200 and applied.json()["state"] == "applied"
    assert ledger.partner(managed["partner_id"])["signer"] == lost
    gw.post("/v1/members", managed["api_key"], {"member_id": "m-2", "pin": "1234"})
    unsigned = gw.post(
        "/v1/earn",
        managed["api_key"],
        {"member_id": "m-2", "receipt_id": "M-1", "amount_minor": 500, "currency": "EUR"},
    )
    assert error(unsigned) == (422, "signature_required")


def test_programme_changes_are_announced_to_who_they_concern(noticed: Gateway) -> None:
    gw, admin = noticed, noticed.admin_key
    receiver = Receiver()
    try:
        bean, grocer = gw.partner(), gw.partner("Grocer")
        events = ["programme.change_scheduled"]
        for key, path in ((admin, "/operator"), (bean["api_key"], "/bean"), (grocer["api_key"], "/grocer")):
            assert gw.post("/v1/webhooks", key, {"url": receiver.url(path), "events": events}).status_code == 201
        tiers = call(gw, "POST", "/v1/programme/changes", admin, {"tiers": TIERS}).json()["changes"][0]
        rate = call(
            gw, "PATCH", f"/v1/partners/{grocer['partner_id']}", admin, {"prices": {"issue": 2, "redemption": 1}}
        )
        prices = rate.json()["changes"][0]
        # Scheduled elsewhere (`loyalty` with the key): the watch reads it from the chain.
        operator = gw.runtime.operator
        assert operator is not None
        elsewhere = gw.runtime.ledger.schedule(operator, "setExpiryMonths", 18)
        watch = gw.client.app.state.programme_watch  # type: ignore[attr-defined]
        assert [c["change_id"] for c in follow(gw.runtime, watch, apply_due=False).new_pending] == [
            tiers["change_id"],
            prices["change_id"],
            elsewhere,
        ]
        assert follow(gw.runtime, watch, apply_due=False).new_pending == []
        deadline = time.monotonic() + 30
        while len(receiver.received) < 8 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        got: dict[str, list[int]] = {}
        for path, _, body in receiver.received:
            event = json.loads(body)
            assert event["type"] == "programme.change_scheduled"
            got.setdefault(path, []).append(event["data"]["change_id"])
        programme_wide = [tiers["change_id"], elsewhere]
        assert sorted(got["/operator"]) == sorted([*programme_wide, prices["change_id"]])
        assert sorted(got["/grocer"]) == sorted([*programme_wide, prices["change_id"]])
        assert sorted(got["/bean"]) == sorted(programme_wide)  # another partner's prices are not its business
    finally:
        receiver.server.shutdown()


def test_without_the_operator_key_every_write_names_the_command(tmp_path: Path, database_url: str | None) -> None:
    data = tmp_path / "data"
    open_runtime(settings(database_url), data_dir=data, log=False).close()
    runtime = open_runtime(settings(database_url, operator_key_in_gateway=False), data_dir=data, log=False)
    try:
        admin = (data / "admin.key").read_text().strip()
        with TestClient(create_app(runtime, run_submitter=False)) as client:
            for method, path, body in WRITES:
                answer = client.request(method, path, json=body, headers={"Authorization": f"Bearer {admin}"})
                assert answer.status_code == 409, (path, answer.text)
                refusal = answer.json()["error"]
                assert refusal["code"] == "operator_key_absent" and "`loyalty " in refusal["message"], refusal
            assert client.get("/v1/programme", headers={"Authorization": f"Bearer {admin}"}).status_code == 200
    finally:
        runtime.close()
