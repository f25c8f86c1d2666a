"""The gateway without the operator's key (SPEC section 3): it runs on the relayer's key alone,
refuses to onboard partners on-chain itself, and adopts a partner the operator added on-chain
elsewhere after checking its terms against the chain. The operator's key here belongs to the
test, as it would to a machine the gateway cannot reach."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gateway.api.main import create_app
from gateway.app.bootstrap import open_runtime
from gateway.app.runtime import Runtime
from gateway.chain.ledger import Sender
from gateway.core.errors import ConfigError
from partners.signing import EarnMessage, Receipt, address_of, sign
from tests.gateway.conftest import make_settings
from tests.support import key_for


@pytest.fixture
def runtime(tmp_path: Path, database_url: str | None) -> Iterator[Runtime]:
    data = tmp_path / "data"
    open_runtime(make_settings(database_url), data_dir=data, log=False).close()  # deployed with the key
    rt = open_runtime(make_settings(database_url, operator_key_in_gateway=False), data_dir=data, log=False)
    yield rt
    rt.close()


def test_a_gateway_without_the_operator_key_cannot_deploy(tmp_path: Path) -> None:
    settings = make_settings(None, operator_key_in_gateway=False)
    with pytest.raises(ConfigError, match="no operator key to deploy with"):
        open_runtime(settings, data_dir=tmp_path / "empty", log=False)


def test_partners_are_added_on_chain_elsewhere_and_adopted(runtime: Runtime) -> None:
    assert runtime.operator is None
    ledger = runtime.ledger
    operator = Sender(runtime.chain.w3, runtime.chain.dev_keys[0])  # kept away from the gateway
    assert operator.address != runtime.relayer.address
    partner_key = key_for("adopted-partner")
    body = {
        "name": "Grocer",
        "currency": "EUR",
        "earn_rate": {"points": 1, "per_minor_units": 100},
        "allowance": 1,
        "signer_address": address_of(partner_key),
    }
    admin = {"Authorization": f"Bearer {(runtime.data_dir / 'admin.key').read_text().strip()}"}
    with TestClient(create_app(runtime, run_submitter=False)) as client:
        refused = client.post("/v1/partners", headers=admin, json=body)
        assert (refused.status_code, refused.json()["error"]["code"]) == (409, "operator_key_absent")
        assert ledger.view("partnerCount") == 0  # nothing happened on-chain

        pid = ledger.add_partner(
            operator, signer=address_of(partner_key), rate_points=1, rate_per_minor_units=100, currency="EUR",
            allowance=50_000,
        )  # fmt: skip
        unknown = client.post("/v1/partners", headers=admin, json={**body, "partner_id": pid + 1})
        assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "unknown_partner")
        wrong = client.post(
            "/v1/partners",
            headers=admin,
            json={**body, "partner_id": pid, "earn_rate": {"points": 5, "per_minor_units": 1}},
        )
        assert (wrong.status_code, wrong.json()["error"]["code"]) == (422, "invalid_partner")
        assert wrong.json()["error"]["on_chain"]["earn_rate"] == [1, 100]
        managed = client.post("/v1/partners", headers=admin, json={**body, "partner_id": pid, "signer_address": None})
        assert managed.status_code == 422

        adopted = client.post("/v1/partners", headers=admin, json={**body, "partner_id": pid})
        assert adopted.status_code == 201, adopted.text
        created = adopted.json()
        assert (created["partner_id"], created["managed"], created["allowance"]) == (pid, False, 50_000)
        again = client.post("/v1/partners", headers=admin, json={**body, "partner_id": pid})
        assert (again.status_code, again.json()["error"]["code"]) == (409, "duplicate_partner")

        # The adopted partner works: a signed earn goes through with the relayer's key alone.
        key = {"Authorization": f"Bearer {created['api_key']}"}
        member = client.post("/v1/members", headers=key, json={"member_id": "m-1", "pin": "2468"}).json()
        issued_at = "2026-11-22T11:00:00+00:00"
        receipt = Receipt("earn", pid, "G-1", "m-1", 2500, "EUR", issued_at=issued_at)
        message = EarnMessage(pid, member["address"], 2500, receipt.ref(), 1, 2**40)
        earn = client.post(
            "/v1/earn",
            headers=key,
            json={
                "member_id": "m-1",
                "receipt_id": "G-1",
                "amount_minor": 2500,
                "currency": "EUR",
                "issued_at": issued_at,
                "partner_signature": {"signature": sign(ledger.domain, message, partner_key).hex(), "nonce": 1,
                                      "deadline": 2**40},
            },
        )  # fmt: skip
        assert earn.status_code == 202, earn.text
        app_submitter = client.app.state.submitter  # type: ignore[attr-defined]
        for _ in range(5):
            if not app_submitter.step():
                break
        assert client.get("/v1/members/m-1", headers=key).json()["balance"] == 25
