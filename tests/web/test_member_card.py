"""The member page's digital card and its list of coming programme changes (SPEC section 3 and
issue 13, r2), in headless Chromium against a gateway on the embedded chain whose ledger has a
notice period of three days: a scheduled change waits there, and the page says so.

The card is read back from a screenshot with ZXing, the barcode library tills' scanner apps
use, so the test checks what a till would read, not what we meant to draw.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from gateway.api.main import create_app
from gateway.app.bootstrap import open_runtime
from gateway.app.runtime import Runtime
from gateway.core.config import CoalitionSettings, TierSettings
from tests.gateway.conftest import make_settings
from tests.gateway.live import uvicorn_thread
from tests.web.test_pages import browser, find, screenshot  # noqa: F401 -- the module's browser fixture

DAY = 86_400
NOTICE = 3 * DAY


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Runtime, str]]:
    data = tmp_path_factory.mktemp("card") / "data"
    # The tests apply due changes themselves: the gateway's watch must not race them to it.
    settings = make_settings(None, apply_due_changes=False)
    settings.coalition = CoalitionSettings(
        notice_period_seconds=NOTICE,
        tiers=[TierSettings(name="Green", threshold=0, multiplier_bps=10_000)],
    )
    runtime = open_runtime(settings, data_dir=data, log=False)
    try:
        with uvicorn_thread(create_app(runtime)) as url:
            admin = (data / "admin.key").read_text().strip()
            body = {"name": "Bean & Leaf", "currency": "EUR", "earn_rate": {"points": 1, "per_minor_units": 100}}
            answer = httpx.post(url + "/v1/partners", json={**body, "allowance": 10**6}, headers=_auth(admin))
            assert answer.status_code == 201, answer.text
            key = answer.json()["api_key"]
            member = {"member_id": "card-7", "pin": "1234"}
            assert httpx.post(url + "/v1/members", json=member, headers=_auth(key)).status_code == 201
            yield url, runtime, key
    finally:
        runtime.close()


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_the_card_is_a_qr_code_of_the_member_id_that_a_scanner_reads(
    site: tuple[str, Runtime, str],
    browser: Any,  # noqa: F811
) -> None:
    import zxingcpp
    from PIL import Image

    url, _, _ = site
    browser.get(url + "/members/view?q=card-7")
    card = find(browser, "#card svg")
    png = card.screenshot_as_png  # the code as the browser drew it
    codes = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
    assert [(c.format, c.text) for c in codes] == [(zxingcpp.BarcodeFormat.QRCode, "card-7")]
    assert find(browser, "#member-id").text == "card-7"
    screenshot(browser, "member-card")


def test_a_change_under_notice_is_listed_with_its_countdown_until_it_applies(
    site: tuple[str, Runtime, str],
    browser: Any,  # noqa: F811
) -> None:
    url, runtime, _ = site
    ledger = runtime.ledger
    with runtime.operator_lock:
        expiry = ledger.schedule(runtime.operator, "setExpiryMonths", 6)
        tiers = ledger.schedule(runtime.operator, "setTiers", [(0, 10_000), (500, 15_000)])
    assert ledger.change(expiry)["state"] == ledger.change(tiers)["state"] == "pending"  # pending: notice applies
    browser.get(url + "/members/view?q=card-7")
    rows = [row.text for row in browser.find_elements("css selector", "#upcoming tbody tr")]
    assert len(rows) == 2, rows
    assert "(in 3 days)" in rows[0] and "expire at the end of the 6th full month" in rows[0]
    assert "Green: from 0 qualifying points, x1" in rows[1] and "tier 1: from 500 qualifying points, x1.5" in rows[1]
    screenshot(browser, "member-upcoming")

    # Cancelled: no longer coming. Applied after the notice: no longer coming either.
    with runtime.operator_lock:
        ledger.call(runtime.operator, "cancelChange", expiry)
    runtime.chain.travel_to(runtime.chain.latest_timestamp() + NOTICE + 60)
    browser.get(url + "/members/view?q=card-7")
    rows = [row.text for row in browser.find_elements("css selector", "#upcoming tbody tr")]
    assert len(rows) == 1 and "(due now)" in rows[0] and "New tier table" in rows[0]
    with runtime.operator_lock:
        ledger.apply_change(runtime.operator, tiers)
    browser.get(url + "/members/view?q=card-7")
    assert browser.find_elements("css selector", "#upcoming") == []
    assert "500 more for tier 1" in find(browser, "#tier").find_element("xpath", "..").text


def test_the_card_is_inline_svg_under_the_pages_policy(site: tuple[str, Runtime, str]) -> None:
    """The page's policy loads nothing from elsewhere (`default-src 'none'`): the card is drawn
    inline, no image request, no script."""
    url, _, _ = site
    page = httpx.get(url + "/members/view", params={"q": "card-7"})
    assert page.status_code == 200 and "default-src 'none'" in page.headers["content-security-policy"]
    assert '<div class="card qr" id="card"><svg' in page.text and "<title>Card of member card-7</title>" in page.text
    assert "<script" not in page.text and "<img" not in page.text.split('id="card"')[1].split("</div>")[0]


def _confirmed(url: str, key: str, answer: httpx.Response) -> dict[str, Any]:
    assert answer.status_code == 202, answer.text
    op_id = answer.json()["operation_id"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        op: dict[str, Any] = httpx.get(f"{url}/v1/operations/{op_id}", headers=_auth(key)).json()
        if op["status"] in ("confirmed", "rejected"):
            assert op["status"] == "confirmed", op
            return op
        time.sleep(0.05)
    raise AssertionError(f"operation {op_id} was not confirmed")


def test_awards_refunds_and_a_migration_are_movements_that_add_up_to_the_balance(
    site: tuple[str, Runtime, str],
    browser: Any,  # noqa: F811
) -> None:
    from partners.signing import address_of

    url, runtime, key = site
    runtime.chain.travel_to(runtime.chain.latest_timestamp() + NOTICE + 60)  # the partner issues after the notice

    def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        return _confirmed(url, key, httpx.post(url + path, json=body, headers=_auth(key)))

    assert httpx.post(url + "/v1/members", json={"member_id": "mover", "pin": "4321"}, headers=_auth(key)).is_success
    post("/v1/earn", {"member_id": "mover", "receipt_id": "E-1", "amount_minor": 10_000, "currency": "EUR"})
    post("/v1/awards", {"member_id": "mover", "receipt_id": "A-1", "points": 20, "reason": "goodwill"})
    pin = {"pin": "4321"}
    post("/v1/redemptions", {"member_id": "mover", "receipt_id": "S-1", "points": 50, "authorization": pin})
    post("/v1/refunds", {"redemption_receipt_id": "S-1", "receipt_id": "F-1", "points": 30, "reason": "returned"})

    browser.get(url + "/members/view?q=mover")
    old = find(browser, "#address").text
    assert runtime.ledger.balance_of(old) == 100 == int(find(browser, "#balance").get_attribute("data-points"))
    rows = [r.text for r in browser.find_elements("css selector", "#activity tbody tr")]
    assert len(rows) == 4, rows
    assert "given back by Bean & Leaf: goods returned +30" in rows[0]
    assert "spent at Bean & Leaf -50" in rows[1]
    assert "awarded by Bean & Leaf +20" in rows[2]
    assert "earned at Bean & Leaf" in rows[3] and "+100" in rows[3]

    wallet = address_of("0x" + "7e" * 32)
    post("/v1/members/mover/migrate", {"address": wallet, "authorization": pin})
    browser.get(url + "/members/view?q=mover")
    assert find(browser, "#address").text.lower() == wallet.lower()
    assert runtime.ledger.balance_of(wallet) == 100 == int(find(browser, "#balance").get_attribute("data-points"))
    rows = [r.text for r in browser.find_elements("css selector", "#activity tbody tr")]
    assert len(rows) == 1 and "moved in from the member's earlier address +100" in rows[0], rows
    browser.get(url + f"/members/view?q={old}")  # the card's old address finds the member where it is now
    assert find(browser, "#address").text.lower() == wallet.lower()
    screenshot(browser, "member-migrated")


def test_a_debt_is_shown_and_its_rows_still_add_up_to_the_balance(
    site: tuple[str, Runtime, str],
    browser: Any,  # noqa: F811
) -> None:
    """(r2) A reversal beyond the balance under the debt policy: the page shows the debt, the
    reversal's full row with the part not held added back as debt, and the next earn with the
    part that repaid the debt taken off; the rows on the ledger add up to the balance."""
    url, runtime, key = site
    admin = (runtime.data_dir / "admin.key").read_text().strip()
    runtime.chain.travel_to(runtime.chain.latest_timestamp() + NOTICE + 60)  # the partner issues after the notice

    def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        return _confirmed(url, key, httpx.post(url + path, json=body, headers=_auth(key)))

    def page() -> tuple[int, list[str], list[int]]:
        browser.get(url + "/members/view?q=debtor")
        rows = browser.find_elements("css selector", "#activity tbody tr")
        points = [int(r.find_element("css selector", "td.num").text.replace(",", "")) for r in rows]
        return int(find(browser, "#balance").get_attribute("data-points")), [r.text for r in rows], points

    assert httpx.post(url + "/v1/members", json={"member_id": "debtor", "pin": "4321"}, headers=_auth(key)).is_success
    post("/v1/earn", {"member_id": "debtor", "receipt_id": "D-1", "amount_minor": 30_000, "currency": "EUR"})
    pin = {"pin": "4321"}
    post("/v1/redemptions", {"member_id": "debtor", "receipt_id": "D-S", "points": 250, "authorization": pin})
    # The operator allows debt: a change under the notice period, applied once due.
    change = httpx.post(url + "/v1/programme/changes", json={"debt_allowed": True}, headers=_auth(admin))
    assert change.status_code == 202, change.text
    [scheduled] = change.json()["changes"]
    runtime.chain.travel_to(runtime.chain.latest_timestamp() + NOTICE + 60)
    applied = httpx.post(url + f"/v1/programme/changes/{scheduled['change_id']}/apply", headers=_auth(admin))
    assert applied.status_code == 200 and applied.json()["state"] == "applied", applied.text

    reversal = post("/v1/reversals", {"receipt_id": "D-1", "refund_id": "D-1/r", "points": 120, "reason": "returned"})
    assert (reversal["points_taken"], reversal["debt"]) == (50, 70)
    balance, rows, points = page()
    assert balance == 0 == sum(points)
    assert int(find(browser, "#debt").get_attribute("data-points")) == 70
    assert "refund at Bean & Leaf: points taken back -120" in rows[0], rows
    assert "not held, owed as debt" in rows[1] and "+70" in rows[1], rows
    screenshot(browser, "member-debt")
    link = browser.find_elements("css selector", "#activity tbody tr")[1].find_element("css selector", "a.proof")
    evidence = httpx.get(str(link.get_attribute("href")))
    assert evidence.status_code == 200 and "DebtRecorded" in evidence.text

    post("/v1/earn", {"member_id": "debtor", "receipt_id": "D-2", "amount_minor": 10_000, "currency": "EUR"})
    balance, rows, points = page()
    assert balance == 30 == sum(points) == runtime.ledger.balance_of(find(browser, "#address").text)
    assert points == [100, -70, -120, 70, -250, 300], rows
    assert "debt repaid" in rows[1], rows
    assert browser.find_elements("css selector", "#debt") == []  # paid: no debt figure
