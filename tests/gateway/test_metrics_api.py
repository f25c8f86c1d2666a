"""GET /v1/audit/metrics: auditors and the operator see anyone's figures, a partner its own."""

from __future__ import annotations

from tests.gateway.conftest import Gateway


def test_metrics_roles_and_figures(gw: Gateway) -> None:
    bean, fresh = gw.partner(), gw.partner("FreshMart")
    gw.post("/v1/members", bean["api_key"], {"member_id": "card-1", "pin": "1234"})
    for receipt in ("R-1", "R-2"):
        body = {"member_id": "card-1", "receipt_id": receipt, "amount_minor": 1250, "currency": "EUR"}
        assert gw.post("/v1/earn", bean["api_key"], body).status_code == 202
    gw.settle()
    auditor = gw.post("/v1/api-keys", gw.admin_key, {"role": "auditor"}).json()["api_key"]
    whole = gw.get("/v1/audit/metrics", auditor).json()
    assert (whole["points_issued"], whole["members_active"], whole["repeat_purchase_rate"]) == (24, 1, 1.0)
    assert whole["partner_id"] is None and whole["source"]["address"] == gw.runtime.ledger.address
    # A partner gets its own figures, asked for or not, and never another's.
    own = gw.get("/v1/audit/metrics", bean["api_key"]).json()
    assert (own["partner_id"], own["points_issued"]) == (bean["partner_id"], 24)
    theirs = gw.get(f"/v1/audit/metrics?partner_id={bean['partner_id']}", fresh["api_key"])
    assert (theirs.status_code, theirs.json()["error"]["code"]) == (403, "forbidden")
    assert gw.get("/v1/audit/metrics", fresh["api_key"]).json()["points_issued"] == 0
    assert gw.get(f"/v1/audit/metrics?partner_id={fresh['partner_id']}", gw.admin_key).json()["points_issued"] == 0
    for query, status in [
        ("from=2030-01-01&to=2029-01-01", 422),
        ("from=yesterday", 422),
        ("partner_id=0", 422),
        ("partner_id=99999999999999999999", 422),
        ("churn_days=-1", 422),
    ]:
        assert gw.get(f"/v1/audit/metrics?{query}", auditor).status_code == status, query
    assert gw.client.get("/v1/audit/metrics").status_code == 401
