"""The audit matches the gateway's index and stored receipts with the chain, and names tampering."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from gateway.audit.verify import AuditReport, read_index, verify_chain
from tests.gateway.conftest import Gateway


def _history(gw: Gateway) -> str:
    key = gw.partner()["api_key"]
    gw.post("/v1/members", key, {"member_id": "ana", "pin": "1234"})
    gw.post("/v1/members", key, {"member_id": "ben", "pin": "5678"})
    for i, (who, amount) in enumerate([("ana", 1250), ("ben", 30_000), ("ana", 4_000)]):
        assert (
            gw.post(
                "/v1/earn",
                key,
                {"member_id": who, "receipt_id": f"R-{i + 1}", "amount_minor": amount, "currency": "EUR"},
            ).status_code
            == 202
        )
    gw.settle()
    assert (
        gw.post(
            "/v1/redemptions",
            key,
            {"member_id": "ben", "receipt_id": "X-1", "points": 50, "authorization": {"pin": "5678"}},
        ).status_code
        == 202
    )
    assert gw.post("/v1/reversals", key, {"receipt_id": "R-3", "points": 10, "reason": "refund"}).status_code == 202
    gw.settle()
    return str(key)


def _verify(gw: Gateway) -> AuditReport:
    with gw.runtime.sessions() as session:
        index = read_index(session)
    return verify_chain(
        gw.runtime.chain.w3, gw.runtime.ledger, from_block=gw.runtime.ledger.deployment_block, index=index
    )


def _sql(gw: Gateway, statement: str, **params: object) -> None:
    with gw.runtime.writes.begin() as session:
        session.execute(sa.text(statement), params)


def test_an_untouched_index_verifies_and_receipts_prove(gw: Gateway) -> None:
    key = _history(gw)
    report = _verify(gw)
    assert report.ok, [str(d) for d in report.discrepancies]
    assert report.operations == 5
    auditor = gw.post("/v1/api-keys", gw.admin_key, {"role": "auditor"}).json()["api_key"]
    proof = gw.get("/v1/audit/receipts/1/R-1", auditor).json()
    assert proof["matches"] is True and proof["kind"] == "earn"
    assert proof["receipt"]["amount_minor"] == 1250
    assert proof["event"]["name"] == "Earned" and proof["event"]["receipt_ref"] == proof["receipt_hash"]
    assert gw.get("/v1/audit/receipts/1/R-1", key).status_code == 403  # auditors and admins only
    assert gw.get("/v1/audit/receipts/1/nope", auditor).status_code == 404


@pytest.mark.parametrize(
    "case", ["receipt_edited", "index_copy_edited", "row_deleted", "row_added", "hash_changed", "receipt_deleted"]
)
def test_tampering_is_caught_and_named(gw: Gateway, case: str) -> None:
    _history(gw)
    if case == "receipt_edited":  # the stored receipt itself (custody)
        _sql(gw, "UPDATE receipts SET receipt_doc = replace(receipt_doc, '1250', '9250') WHERE receipt_id = 'R-1'")
        expected = "stored receipt does not hash to its reference"
    elif case == "index_copy_edited":
        _sql(gw, "UPDATE operations SET receipt_doc = replace(receipt_doc, '1250', '9250') WHERE receipt_id = 'R-1'")
        expected = "index copy differs from the stored receipt"
    elif case == "row_deleted":
        _sql(gw, "DELETE FROM operations WHERE receipt_id = 'X-1'")
        expected = "event with no index row"
    elif case == "row_added":
        _sql(
            gw,
            "INSERT INTO operations (id, kind, partner_id, member_id, receipt_id, status, receipt_doc, "
            "receipt_ref, nonce, deadline, signature, tx_hash, log_index, created_at, updated_at) "
            "SELECT 'forged', kind, partner_id, member_id, 'R-forged', 'confirmed', receipt_doc, receipt_ref, "
            "999, deadline, signature, :tx, 0, created_at, updated_at FROM operations WHERE receipt_id = 'R-2'",
            tx="0x" + "ab" * 32,
        )
        expected = "index row with no event"
    elif case == "hash_changed":
        _sql(gw, "UPDATE operations SET receipt_ref = :ref WHERE receipt_id = 'R-2'", ref="0x" + "00" * 32)
        expected = "index copy of the receipt does not hash to its reference"
    else:
        _sql(gw, "DELETE FROM receipts WHERE receipt_id = 'R-2'")
        expected = "index row with no stored receipt"
    report = _verify(gw)
    assert not report.ok
    assert expected in [d.kind for d in report.discrepancies], [str(d) for d in report.discrepancies]
    # Every discrepancy names the partner, and the partner's own receipt id where there is a row.
    found = next(d for d in report.discrepancies if d.kind == expected)
    assert "partner 1" in found.where, found.where
    receipt = {"row_deleted": None, "row_added": "R-forged", "hash_changed": "R-2", "receipt_deleted": "R-2"}
    named = receipt.get(case, "R-1")
    assert named is None or f"receipt {named}" in found.where, found.where
    if case == "receipt_edited":
        assert "receipt hash differs from the on-chain event" in [d.kind for d in report.discrepancies]
        auditor = gw.post("/v1/api-keys", gw.admin_key, {"role": "auditor"}).json()["api_key"]
        assert gw.get("/v1/audit/receipts/1/R-1", auditor).json()["matches"] is False


def test_settlement_endpoint_balances(gw: Gateway) -> None:
    _history(gw)
    auditor = gw.post("/v1/api-keys", gw.admin_key, {"role": "auditor"}).json()["api_key"]
    statement = gw.get("/v1/audit/settlement?from=2000-01-01&to=2100-01-01", auditor).json()
    assert statement["balanced"] is True
    line = statement["partners"][0]
    # earns of 12 + 300 + 40 points; 10 reversed; 50 redeemed at the same partner
    assert (line["issued"], line["reversed"], line["redeemed"], line["net_points"]) == (352, 10, 50, 292)
    # by 2100 every point has expired: all of it is breakage, nothing is outstanding
    assert statement["liability"]["end_points"] == 0 and statement["breakage"]["points"] == 292
    backwards = gw.get("/v1/audit/settlement?from=2026-12-01&to=2026-11-01", auditor)
    assert backwards.status_code == 422
