"""GET /v1/audit/metrics: auditors and the operator see anyone's figures, a partner its own."""

from __future__ import annotations

import sqlalchemy as sa

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
    # Every figure the API returns is in its published schema (r2 added debt and earns_named).
    schemas = gw.client.get("/openapi.json").json()["components"]["schemas"]
    assert {"debt_outstanding", "liability_points"} <= set(schemas["ProgrammeMetrics"]["required"])
    assert "earns_named" in schemas["CampaignFigures"]["required"]
    assert set(whole) - {"from", "to"} <= set(schemas["ProgrammeMetrics"]["properties"]) | {"period", "source"}


def test_the_index_gives_the_same_figures_as_the_chain(gw: Gateway) -> None:
    from gateway.audit.metrics import metrics_of
    from gateway.audit.metrics_index import cross_check, index_events
    from gateway.audit.report import load_history
    from gateway.chain.events import timestamps
    from tests.gateway.history import drain, scripted_history

    h = scripted_history(gw)  # two partners, earns, a redemption, a reversal, a rejection, expiry
    # (r2) an award (issued, not a purchase) and a refund of part of ben's redemption X-1
    award = {"member_id": "ana", "receipt_id": "A-1", "points": 7, "reason": "goodwill"}
    assert gw.post("/v1/awards", h.cafe, award).status_code == 202
    refund = {"redemption_receipt_id": "X-1", "receipt_id": "F-1", "points": 20, "reason": "returned"}
    assert gw.post("/v1/refunds", h.grocer, refund).status_code == 202
    drain(gw)
    rt = gw.runtime
    history = load_history(rt.chain.w3, rt.ledger, from_block=rt.ledger.deployment_block)
    with rt.sessions() as session:
        indexed = index_events(session)
    times = {**history.times, **timestamps(rt.chain.w3, {e.block_number for e in indexed})}
    period = {"period_from": 0, "period_to": history.to_timestamp + 1}
    from_chain = metrics_of(history.events, history.times, **period)
    from_index = metrics_of(indexed, times, **period)
    assert (from_chain.issued, from_chain.redeemed, from_chain.reversed) == (from_index.issued, 50 - 20, 10)
    assert (from_index.redeemed, from_chain.purchasers) == (30, 2)  # the award is no purchase
    with rt.sessions() as session:
        awarded = session.execute(sa.text("SELECT points FROM operations WHERE receipt_id = 'A-1'")).scalar()
    assert awarded == 7 and [e.name for e in indexed].count("Awarded") == 1
    assert cross_check(from_chain, from_index) == []
    for pid in (1, 2):
        assert (
            cross_check(
                metrics_of(history.events, history.times, partner_id=pid, **period),
                metrics_of(indexed, times, partner_id=pid, **period),
            )
            == []
        )
    # A tampered index row shows up as a disagreement.
    with rt.writes.begin() as session:
        session.execute(sa.text("UPDATE operations SET points = points + 1 WHERE receipt_id = 'R-1'"))
    with rt.sessions() as session:
        tampered = metrics_of(index_events(session), times, **period)
    assert cross_check(from_chain, tampered) == [f"issued: chain {from_chain.issued}, index {from_chain.issued + 1}"]
