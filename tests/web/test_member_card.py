"""The member page's digital card and its list of coming programme changes (SPEC section 3 and
issue 13, r2), in headless Chromium against a gateway on the embedded chain whose ledger has a
notice period of three days: a scheduled change waits there, and the page says so.

The card is read back from a screenshot with ZXing, the barcode library tills' scanner apps
use, so the test checks what a till would read, not what we meant to draw.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn

from gateway.api.main import create_app
from gateway.app.bootstrap import open_runtime
from gateway.app.runtime import Runtime
from gateway.chain.backends import free_port
from gateway.core.config import CoalitionSettings, TierSettings
from tests.gateway.conftest import make_settings
from tests.web.test_pages import browser, find, screenshot  # noqa: F401 -- the module's browser fixture

DAY = 86_400
NOTICE = 3 * DAY


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Runtime, str]]:
    data = tmp_path_factory.mktemp("card") / "data"
    settings = make_settings(None)
    settings.coalition = CoalitionSettings(
        notice_period_seconds=NOTICE,
        tiers=[TierSettings(name="Green", threshold=0, multiplier_bps=10_000)],
    )
    runtime = open_runtime(settings, data_dir=data, log=False)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(runtime), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the gateway did not start"
        time.sleep(0.05)
    try:
        url, admin = f"http://127.0.0.1:{port}", (data / "admin.key").read_text().strip()
        body = {"name": "Bean & Leaf", "currency": "EUR", "earn_rate": {"points": 1, "per_minor_units": 100}}
        answer = httpx.post(url + "/v1/partners", json={**body, "allowance": 10**6}, headers=_auth(admin))
        assert answer.status_code == 201, answer.text
        key = answer.json()["api_key"]
        member = {"member_id": "card-7", "pin": "1234"}
        assert httpx.post(url + "/v1/members", json=member, headers=_auth(key)).status_code == 201
        yield url, runtime, key
    finally:
        server.should_exit = True
        thread.join(timeout=30)
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
