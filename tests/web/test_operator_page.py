"""The operator's page in a real headless Chromium: an admin key signs in (a partner's is
refused), the page lists partners, the allowance running low and the scheduled change with its
countdown, as the chain has them; revoking the key ends the session; a forged cookie is no key."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.api.main import create_app
from gateway.app.bootstrap import open_runtime
from gateway.app.runtime import Runtime
from tests.gateway.live import uvicorn_thread
from tests.gateway.test_console_writes import NOTICE, settings
from tests.web.test_pages import all_of, browser, find, screenshot  # noqa: F401 - the browser fixture

Site = tuple[str, Runtime, str]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    data: Path = tmp_path_factory.mktemp("operator") / "data"
    runtime = open_runtime(settings(None), data_dir=data, log=False)
    try:
        with uvicorn_thread(create_app(runtime)) as url:
            yield url, runtime, (data / "admin.key").read_text().strip()
    finally:
        runtime.close()


def api(site: Site, method: str, path: str, key: str, body: Any = None) -> httpx.Response:
    url, _, _ = site
    return httpx.request(method, url + path, json=body, headers={"Authorization": f"Bearer {key}"}, timeout=60)


def sign_in(driver: Any, url: str, key: str) -> None:
    driver.delete_all_cookies()
    driver.get(url + "/operator")
    find(driver, "#api_key").send_keys(key)
    find(driver, "#sign-in").click()


def test_the_operator_page_shows_what_the_chain_holds(site: Site, browser: Any) -> None:  # noqa: F811
    url, runtime, admin = site
    partners = {}
    for name, allowance in (("Bean & Leaf", 10**9), ("Corner shop", 400)):
        body = {
            "name": name,
            "currency": "EUR",
            "earn_rate": {"points": 1, "per_minor_units": 100},
            "allowance": allowance,
        }
        answer = api(site, "POST", "/v1/partners", admin, body)
        assert answer.status_code == 201, answer.text
        partners[name] = answer.json()
    tiers = [{"threshold": 0, "multiplier_bps": 10_000}, {"threshold": 300, "multiplier_bps": 15_000}]
    change = api(site, "POST", "/v1/programme/changes", admin, {"tiers": tiers}).json()["changes"][0]

    sign_in(browser, url, partners["Bean & Leaf"]["api_key"])
    assert find(browser, "#problem").text == "This page needs an admin key."
    sign_in(browser, url, "lk_not_a_key")
    assert find(browser, "#problem").text == "That is not a valid API key."
    sign_in(browser, url, admin)
    find(browser, "#partners")
    rows = all_of(browser, "#partners tbody tr")
    assert [r.get_attribute("data-partner") for r in rows] == ["1", "2"]
    for row in rows:  # each allowance as the contract's own view has it
        pid = int(row.get_attribute("data-partner"))
        allowance = row.find_element("css selector", ".allowance").text
        assert allowance == f"{runtime.ledger.partner(pid)['allowance']:,}"
    assert "issues from" in rows[0].text  # new partners wait out the notice period
    low = all_of(browser, "#low li")
    assert [li.get_attribute("data-partner") for li in low] == [str(partners["Corner shop"]["partner_id"])]
    assert "400 points left" in low[0].text
    scheduled = all_of(browser, "#changes tbody tr")
    assert [r.get_attribute("data-change") for r in scheduled] == [str(change["change_id"])]
    assert "from 300 points 1.5x" in scheduled[0].text
    countdown = scheduled[0].find_element("css selector", ".countdown").text
    assert countdown in ("in 3 d 0 h", "in 2 d 23 h"), countdown
    assert find(browser, "#paused").text == "running"
    assert find(browser, "#debt-policy").text == "rejected"  # (r2) the default debt policy
    screenshot(browser, "operator")

    runtime.chain.travel_to(runtime.chain.latest_timestamp() + NOTICE - 3600)
    browser.refresh()
    assert find(browser, "#changes .countdown").text in ("in 0 h 59 min", "in 1 h 0 min", "in 0 h 58 min")

    # Revoking the key ends its session at the next view.
    second = api(site, "POST", "/v1/api-keys", admin, {"role": "admin"}).json()
    sign_in(browser, url, second["api_key"])
    assert find(browser, "#partners")
    assert api(site, "DELETE", f"/v1/api-keys/{second['key_id']}", admin).status_code == 204
    browser.refresh()
    assert find(browser, "#api_key") and not all_of(browser, "#partners")


def test_a_forged_or_missing_cookie_shows_the_sign_in_form(site: Site) -> None:
    url, _, admin = site
    assert 'id="api_key"' in httpx.get(url + "/operator").text
    with httpx.Client(base_url=url) as client:
        signed_in = client.post("/operator/login", data={"api_key": admin})
        assert signed_in.status_code == 303
        cookie = signed_in.cookies["loyalty_operator"]
        assert "lk_" not in cookie  # the key itself never goes to the browser
        assert 'id="partners"' in client.get("/operator").text
        key_id, expires, mac = cookie.split(".")
        for forged in (f"{key_id}.{int(expires) + 10**6}.{mac}", f"{key_id}.{expires}.{'0' * 64}", "x"):
            client.cookies.set("loyalty_operator", forged, path="/operator")
            page = client.get("/operator")
            assert 'id="api_key"' in page.text and 'id="partners"' not in page.text
    assert (
        httpx.post(url + "/operator/login", content=b"api_key=x", headers={"Content-Type": "text/plain"}).status_code
        == 400
    )
