"""The member page's activity shows every movement of the member's points, expiry included, so
that its rows on the ledger add up to the balance the page shows."""

from __future__ import annotations

from gateway.db.models import Member
from gateway.points.rules import month_of, month_start
from gateway.web import member_reads
from tests.gateway.conftest import Gateway

DAY = 86_400


def test_the_activity_rows_add_up_to_the_balance(gw: Gateway) -> None:
    key = gw.partner()["api_key"]
    assert gw.post("/v1/members", key, {"member_id": "ana", "pin": "1234"}).status_code == 201
    chain = gw.runtime.chain
    start = month_of(chain.latest_timestamp()) + 1

    def earn(receipt: str, amount: int) -> None:
        body = {"member_id": "ana", "receipt_id": receipt, "amount_minor": amount, "currency": "EUR"}
        assert gw.post("/v1/earn", key, body).status_code == 202
        gw.settle()

    chain.travel_to(month_start(start) + 14 * DAY)
    earn("R-1", 3_000)  # 30 points, ending with month start + 12
    chain.travel_to(month_start(start + 13) + 14 * DAY)
    earn("R-2", 1_250)  # 12; the 30 of R-1 expired at the end of month start + 12: swept first
    spend = {"member_id": "ana", "receipt_id": "S-1", "points": 5, "authorization": {"pin": "1234"}}
    assert gw.post("/v1/redemptions", key, spend).status_code == 202
    gw.settle()
    # One more on its way: shown, but not (yet) part of the balance.
    later = {"member_id": "ana", "receipt_id": "R-3", "amount_minor": 900, "currency": "EUR"}
    assert gw.post("/v1/earn", key, later).status_code == 202

    with gw.runtime.sessions() as session:
        member = session.get(Member, "ana")
        assert member is not None
        page = member_reads.member_page(gw.runtime, session, member)
    on_ledger = [(m.kind, m.points) for m in page.movements if m.status == "confirmed"]
    assert on_ledger == [("redemption", -5), ("earn", 12), ("expiry", -30), ("earn", 30)]
    assert sum(points for _, points in on_ledger if points is not None) == page.balance == 7
    assert [(m.kind, m.points, m.status) for m in page.movements if m.status != "confirmed"] == [
        ("earn", 9, "accepted")
    ]
    html = gw.client.get("/members/view?q=ana").text
    assert "expired: points older than the expiry period" in html and "add up to the" in html
