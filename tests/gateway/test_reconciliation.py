"""The reconciliation feed and the partner statement: a partner's books against the chain."""

from __future__ import annotations

import csv
import io

from tests.gateway.conftest import Gateway


def _earn(gw: Gateway, key: str, receipt: str, amount: int) -> None:
    body = {"member_id": "card-1", "receipt_id": receipt, "amount_minor": amount, "currency": "EUR"}
    assert gw.post("/v1/earn", key, body).status_code == 202


def test_feed_pages_filters_and_csv_match_the_chain(gw: Gateway) -> None:
    bean, fresh = gw.partner(), gw.partner("FreshMart")
    key = bean["api_key"]
    gw.post("/v1/members", key, {"member_id": "card-1", "pin": "1234"})
    for i in range(5):
        _earn(gw, key, f"R-{i}", 1000 * (i + 1))
    gw.settle()
    _earn(gw, key, "R-late", 500)  # accepted, not yet on-chain
    pid = bean["partner_id"]
    first = gw.get(f"/v1/partners/{pid}/operations?limit=2", key).json()
    assert [o["receipt_id"] for o in first["items"]] == ["R-0", "R-1"] and first["next_cursor"]
    rest = gw.get(f"/v1/partners/{pid}/operations?limit=10&cursor={first['next_cursor']}", key).json()
    assert [o["receipt_id"] for o in rest["items"]] == ["R-2", "R-3", "R-4", "R-late"] and rest["next_cursor"] is None
    confirmed = gw.get(f"/v1/partners/{pid}/operations?status=confirmed", key).json()["items"]
    assert len(confirmed) == 5
    for op in confirmed:  # each row's position holds the event that carries its receipt hash
        receipt = gw.runtime.chain.w3.eth.get_transaction_receipt(op["tx_hash"])
        event = next(e for e in gw.runtime.ledger.decode_logs(receipt) if e.log_index == op["log_index"])
        assert event.name == "Earned" and "0x" + event.args["receiptRef"].hex() == op["receipt_ref"]
        assert receipt["blockNumber"] == op["block_number"]
    assert gw.get(f"/v1/partners/{pid}/operations?status=accepted", key).json()["items"][0]["receipt_id"] == "R-late"
    response = gw.client.get(f"/v1/partners/{pid}/operations", headers={**gw.headers(key), "Accept": "text/csv"})
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [r["receipt_id"] for r in rows] == ["R-0", "R-1", "R-2", "R-3", "R-4", "R-late"]
    assert rows[0]["tx_hash"] == confirmed[0]["tx_hash"] and rows[-1]["tx_hash"] == ""
    # Another partner sees none of it; auditors and the operator do.
    assert gw.get(f"/v1/partners/{pid}/operations", fresh["api_key"]).status_code == 403
    auditor = gw.post("/v1/api-keys", gw.admin_key, {"role": "auditor"}).json()["api_key"]
    assert len(gw.get(f"/v1/partners/{pid}/operations", auditor).json()["items"]) == 6
    for query in ("cursor=abc", "cursor=99999999999999999999", "limit=0", "limit=1001", "kind=gift", "from=2026-02-30"):
        assert gw.get(f"/v1/partners/{pid}/operations?{query}", key).status_code == 422, query
    assert gw.get("/v1/partners/999/operations", gw.admin_key).status_code == 404
    assert gw.get("/v1/partners/99999999999999999999/operations", gw.admin_key).status_code in (404, 422)


def test_statement_gives_the_partners_own_settlement_line(gw: Gateway) -> None:
    bean, fresh = gw.partner(), gw.partner("FreshMart")
    key = bean["api_key"]
    gw.post("/v1/members", key, {"member_id": "card-1", "pin": "1234"})
    _earn(gw, key, "R-1", 12_345)
    gw.settle()
    pid = bean["partner_id"]
    line = gw.get(f"/v1/partners/{pid}/statement", key).json()
    assert (line["issued"], line["redeemed"], line["net_points"], line["currency"]) == (123, 0, 123, "EUR")
    assert line["source"]["address"] == gw.runtime.ledger.address
    whole = gw.get("/v1/audit/settlement?from=2000-01-01&to=2100-01-01", gw.admin_key).json()
    mine = next(p for p in whole["partners"] if p["partner_id"] == pid)
    assert mine["issued"] == line["issued"] and mine["net_points"] == line["net_points"]
    assert gw.get(f"/v1/partners/{pid}/statement", fresh["api_key"]).status_code == 403
    other = gw.get(f"/v1/partners/{fresh['partner_id']}/statement", fresh["api_key"]).json()
    assert (other["issued"], other["net_points"]) == (0, 0)
    assert gw.get("/v1/partners/999/statement", gw.admin_key).status_code == 404
    assert gw.get(f"/v1/partners/{pid}/statement?from=2030-01-01&to=2020-01-01", key).status_code == 422


def test_the_feed_from_a_date_finds_operations_whose_times_run_out_of_order(gw: Gateway) -> None:
    """The feed from a date starts at a seq floor (gateway/operations/feed.py) found from the
    times; acceptance times may run slightly out of seq order (a group commit, a write queue),
    and such an operation is still listed, in seq order."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import update

    from gateway.db.models import Operation

    bean = gw.partner()
    key, pid = bean["api_key"], bean["partner_id"]
    gw.post("/v1/members", key, {"member_id": "card-1", "pin": "1234"})
    for receipt in ("A", "B", "C", "D"):
        _earn(gw, key, receipt, 1000)
    t = datetime(2030, 1, 1, tzinfo=UTC)
    times = {"A": t - timedelta(hours=12), "B": t + timedelta(minutes=5), "C": t, "D": t + timedelta(minutes=1)}
    with gw.runtime.sessions() as session, session.begin():
        for receipt, moment in times.items():
            session.execute(update(Operation).where(Operation.receipt_id == receipt).values(created_at=moment))

    def feed(query: str) -> list[str]:
        return [o["receipt_id"] for o in gw.get(f"/v1/partners/{pid}/operations?{query}", key).json()["items"]]

    # B was accepted five minutes after C by the clock, yet came first in seq order.
    assert feed("from=2030-01-01") == ["B", "C", "D"]
    assert feed("from=2029-12-31&to=2030-01-01") == ["A"]
    assert feed("from=2030-01-02") == []
    assert feed("from=2029-12-01&limit=2") == ["A", "B"]
    # The mirror at a date's end (SQLite reads up to a seq ceiling): C and D, accepted after B,
    # were stamped before midnight, D before C though it came after C in seq order; both are
    # listed up to the date, though B (after midnight) came before them.
    with gw.runtime.sessions() as session, session.begin():
        for receipt, moment in {"C": t - timedelta(seconds=30), "D": t - timedelta(minutes=1)}.items():
            session.execute(update(Operation).where(Operation.receipt_id == receipt).values(created_at=moment))
    assert feed("from=2029-12-31&to=2030-01-01") == ["A", "C", "D"]
    assert feed("from=2030-01-01&to=2030-01-02") == ["B"]
    assert feed("from=2029-01-01&to=2029-12-31") == []
