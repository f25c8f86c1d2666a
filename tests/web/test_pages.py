"""The member and auditor pages in a real headless Chromium, against a gateway on the embedded
chain with SQLite, after a small history made through the API (with months passing).

Screenshots of every page go to test-artifacts/screenshots/ (the path is printed).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from gateway.api.main import create_app
from gateway.app.bootstrap import open_runtime
from gateway.app.runtime import Runtime
from gateway.chain.backends import free_port
from gateway.points.rules import month_of, month_start
from tests.gateway.conftest import make_settings
from tests.support import anvil_required

REPO_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO_ROOT / "test-artifacts" / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
DAY = 86_400


# ------------------------------------------------------------------ the gateway and its history


@dataclass
class Site:
    url: str
    runtime: Runtime
    admin_key: str
    partners: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> creation answer
    ops: dict[str, dict[str, Any]] = field(default_factory=dict)  # label -> confirmed operation
    sweep: tuple[str, int] = ("", 0)  # (tx hash, log index) of the Expired event

    def call(self, method: str, path: str, key: str, body: Any = None) -> httpx.Response:
        return httpx.request(method, self.url + path, json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30)

    def confirmed(self, answer: httpx.Response, key: str) -> dict[str, Any]:
        """Waits until the accepted operation is on-chain (the gateway's submitter runs in its thread)."""
        assert answer.status_code in (201, 202), answer.text
        op_id = answer.json()["operation_id"]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            op: dict[str, Any] = self.call("GET", f"/v1/operations/{op_id}", key).json()
            if op["status"] in ("confirmed", "rejected"):
                assert op["status"] == "confirmed", op
                return op
            time.sleep(0.05)
        raise AssertionError(f"operation {op_id} was not confirmed")

    def travel(self, month: int) -> None:
        self.runtime.chain.travel_to(month_start(month) + 14 * DAY + 12 * 3600)


def make_history(site: Site) -> None:
    """Two partners, two members; ben's points expire, ana earns, spends and gets a refund.

    Bean & Leaf gives 1 point per EUR, Grocer & Co 2; everyone stays in the base tier.
    """
    for name, per in (("Bean & Leaf", 100), ("Grocer & Co", 50)):
        body = {"name": name, "currency": "EUR", "earn_rate": {"points": 1, "per_minor_units": per}, "allowance": 10**9}
        answer = site.call("POST", "/v1/partners", site.admin_key, body)
        assert answer.status_code == 201, answer.text
        site.partners[name] = answer.json()
    bean, grocer = site.partners["Bean & Leaf"]["api_key"], site.partners["Grocer & Co"]["api_key"]
    for member_id, pin in (("ana", "1234"), ("ben", "5678")):
        assert site.call("POST", "/v1/members", bean, {"member_id": member_id, "pin": pin}).status_code == 201
    start = month_of(site.runtime.chain.latest_timestamp()) + 1

    def earn(key: str, member: str, receipt: str, amount: int) -> dict[str, Any]:
        body = {"member_id": member, "receipt_id": receipt, "amount_minor": amount, "currency": "EUR"}
        return site.confirmed(site.call("POST", "/v1/earn", key, body), key)

    site.travel(start)
    site.ops["ben"] = earn(bean, "ben", "B-1", 3_000)  # 30, ending with start + 12
    site.travel(start + 13)
    site.ops["R-1"] = earn(bean, "ana", "R-1", 12_500)  # 125
    site.ops["R-2"] = earn(grocer, "ana", "R-2", 8_000)  # 160
    body = {"member_id": "ana", "receipt_id": "S-1", "points": 40, "authorization": {"pin": "1234"}}
    site.ops["spend"] = site.confirmed(site.call("POST", "/v1/redemptions", grocer, body), grocer)
    body = {"receipt_id": "R-1", "points": 25, "reason": "one cup returned"}
    site.ops["refund"] = site.confirmed(site.call("POST", "/v1/reversals", bean, body), bean)
    runtime = site.runtime
    ben = site.call("GET", "/v1/members/ben", bean).json()["address"]
    with runtime.operator_lock:
        swept = runtime.ledger.expire(runtime.operator, [ben]).named("Expired")
    assert [e.args["points"] for e in swept] == [30]
    site.sweep = (swept[0].tx_hash, swept[0].log_index)
    site.travel(start + 14)
    site.ops["R-3"] = earn(bean, "ana", "R-3", 5_000)  # 50: ana holds 125 + 160 - 40 - 25 + 50 = 270


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    data = tmp_path_factory.mktemp("pages") / "data"
    runtime = open_runtime(make_settings(None), data_dir=data, log=False)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(runtime), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the gateway did not start"
        time.sleep(0.05)
    try:
        site = Site(f"http://127.0.0.1:{port}", runtime, (data / "admin.key").read_text().strip())
        # The chain's clock runs more than a year ahead here: the gateway dates the deadlines
        # of the signatures it makes from the chain's clock when that is ahead of its own.
        make_history(site)
        yield site
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        runtime.close()


# ------------------------------------------------------------------ the browser


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
        if anvil_required():
            pytest.fail(
                "Chromium must be installed in CI (scripts/test installs Debian's chromium and chromium-driver)"
            )
        pytest.skip("no /usr/bin/chromium and /usr/bin/chromedriver (apt-get install chromium chromium-driver)")
    from selenium import webdriver

    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager, should anything call it, must not download
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium')}",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_window_size(1280, 900)
    try:
        yield driver
    finally:
        driver.quit()


def screenshot(driver: Any, name: str, width: int = 1280) -> Path:
    """The whole page at `width` CSS pixels, saved as PNG."""
    driver.set_window_size(width, 900)
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    driver.set_window_size(width, min(max(height, 600), 8000))
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    assert driver.save_screenshot(str(path))
    print(f"screenshot: {path}")
    driver.set_window_size(1280, 900)
    return path


def assert_fits_a_phone(driver: Any, name: str) -> None:
    """Nothing is wider than a phone's screen (wide tables scroll inside themselves)."""
    screenshot(driver, name, width=390)
    driver.set_window_size(390, 844)
    try:
        assert driver.execute_script("return document.documentElement.scrollWidth") <= 390
    finally:
        driver.set_window_size(1280, 900)


def find(driver: Any, css: str) -> Any:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, 20).until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, css)))


def all_of(driver: Any, css: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return list(driver.find_elements(By.CSS_SELECTOR, css))


# ------------------------------------------------------------------ tests


def test_member_page_shows_the_balance_the_chain_holds(site: Site, browser: Any) -> None:
    browser.get(site.url + "/members")
    screenshot(browser, "members-search")
    box = find(browser, "#q")
    box.send_keys("ana")
    box.submit()
    balance = find(browser, "#balance")
    address = find(browser, "#address").text
    # Independently of the page: the contract's own view.
    on_chain = site.runtime.ledger.balance_of(address)
    assert on_chain == 270
    assert int(balance.get_attribute("data-points")) == on_chain and balance.text == "270"
    assert int(find(browser, "#block").text) <= site.runtime.chain.w3.eth.block_number
    assert find(browser, "#tier").text == "Green"
    expiring = [row.text for row in all_of(browser, "#expiring tbody tr")]
    assert len(expiring) == 2 and expiring[-1].endswith("50")  # R-3's 50 last; the others a month earlier
    activity = all_of(browser, "#activity tbody tr")
    assert len(activity) == 5 and all("on the ledger" in row.text for row in activity)
    assert "+125" in activity[-1].text and "Bean & Leaf" in activity[-1].text
    screenshot(browser, "member")
    assert_fits_a_phone(browser, "member-phone")

    links = all_of(browser, "#activity a.proof")
    links[-1].click()  # the oldest: the R-1 purchase
    assert find(browser, "#event-name").text == "Earned"
    r1 = site.ops["R-1"]
    assert find(browser, "#tx-hash").text == r1["tx_hash"]
    assert int(find(browser, "#block-number").text) == r1["block_number"]
    assert int(find(browser, "#log-index").text) == r1["log_index"]
    assert find(browser, "#receipt-verdict").get_attribute("data-matches") == "yes"
    assert find(browser, "#recomputed").text == r1["receipt_ref"]
    screenshot(browser, "proof")


def test_auditor_page_figures_and_chart(site: Site, browser: Any) -> None:
    browser.get(site.url + "/audit")
    supply = site.runtime.ledger.total_supply()
    assert supply == 270  # ben's 30 expired
    assert int(find(browser, "#supply").get_attribute("data-points")) == supply
    assert int(find(browser, "#liability").get_attribute("data-points")) == supply
    assert find(browser, "#agree").text == "agrees with the supply"
    chart = find(browser, "#chart")
    deadline = time.monotonic() + 30
    while not browser.execute_script("return arguments[0].complete", chart):
        assert time.monotonic() < deadline, "the chart did not load"
        time.sleep(0.1)
    assert browser.execute_script("return arguments[0].naturalWidth", chart) == 1100
    rows = {row.text.split(" ")[1]: row.text for row in all_of(browser, "#statement tbody tr")}
    # The whole history: Bean issued 30 + 125 + 50, took back 25; Grocer issued 160, took 40 as payment.
    assert rows["Bean"].endswith("205 25 0 180 1.80 EUR")
    assert rows["Grocer"].endswith("160 0 40 120 1.20 EUR")
    assert "the statement balances" in find(browser, "#balanced").text
    screenshot(browser, "audit")
    assert_fits_a_phone(browser, "audit-phone")


def test_auditor_page_shows_the_programme_metrics_the_api_returns(site: Site, browser: Any) -> None:
    api = site.call("GET", "/v1/audit/metrics", site.admin_key).json()
    browser.get(site.url + "/audit")
    assert int(find(browser, "#m-active").text) == api["members_active"] > 0
    assert int(find(browser, "#m-risk").text) == api["members_at_churn_risk"]

    def shown(rate: float | None) -> str:
        return "-" if rate is None else f"{100 * rate:.1f}%"

    assert find(browser, "#m-redemption").text == shown(api["redemption_rate"])
    assert find(browser, "#m-breakage").text == shown(api["breakage_rate"])
    assert find(browser, "#m-repeat").text == shown(api["repeat_purchase_rate"])
    assert api["points_redeemed"] == 40 and api["flows"][0]["redeemed_at"] != api["flows"][0]["earned_at"]
    chart = find(browser, "#metrics-chart")
    deadline = time.monotonic() + 60
    while not browser.execute_script("return arguments[0].complete", chart):
        assert time.monotonic() < deadline, "the metrics chart did not load"
        time.sleep(0.1)
    assert browser.execute_script("return arguments[0].naturalWidth", chart) == 1200
    browser.execute_script("document.getElementById('metrics').scrollIntoView()")
    screenshot(browser, "audit-metrics")


def test_receipt_check_says_yes_for_a_stored_receipt_and_no_for_an_altered_one(site: Site, browser: Any) -> None:
    bean = site.partners["Bean & Leaf"]["partner_id"]
    stored = site.call("GET", f"/v1/audit/receipts/{bean}/R-1?kind=earn", site.admin_key).json()
    canonical: str = stored["receipt_canonical"]

    def check(text: str, name: str) -> str:
        browser.get(site.url + "/audit")
        find(browser, "#receipt-text").send_keys(text)
        find(browser, "#check").click()
        verdict = find(browser, "#verdict")
        screenshot(browser, name)
        found: str = verdict.get_attribute("data-found")
        return found

    assert check(canonical, "receipt-check-yes") == "yes"
    assert site.ops["R-1"]["receipt_ref"] in browser.page_source  # the hash shown is the on-chain reference
    assert "refunds this purchase" in browser.page_source  # the reversal names the purchase too
    altered = canonical.replace('"amount_minor":12500', '"amount_minor":12501')
    assert altered != canonical
    assert check(altered, "receipt-check-no") == "no"
    # Pretty-printed JSON is not the canonical bytes, but its canonical form is found.
    pretty = json.dumps(json.loads(canonical), indent=2)
    assert check(pretty, "receipt-check-pretty") == "yes"


def test_unknown_member_is_a_friendly_404(site: Site, browser: Any) -> None:
    browser.get(site.url + "/members/view?q=nobody-here")
    assert "No member has this id or address" in find(browser, "#message").text
    screenshot(browser, "unknown-member")
    answer = httpx.get(site.url + "/members/view", params={"q": "nobody-here"})
    assert answer.status_code == 404 and answer.headers["content-type"].startswith("text/html")


@pytest.mark.parametrize(
    "path, status, says",
    [
        ("/members/view?q=%3Cscript%3Ealert(1)%3C/script%3E", 400, "A member id has only letters"),
        ("/members/view?q=" + "x" * 5000, 400, "far longer than any member id"),
        ("/members/view?q=", 400, "Type a member id"),
        ("/members/view?q=0x" + "ab" * 20, 404, "No member has this id or address"),
        ("/audit?from=2026-13-45", 400, "does not exist"),
        ("/audit?from=yesterday", 400, "must look like 2026-11-01"),
        ("/audit?from=2030-02-01&to=2030-01-01", 400, "end date must come after"),
        ("/audit/chart.png?to=1999-01-01", 400, "between the years 2000 and 2200"),
        ("/proof/0x1234/0", 400, "64 hexadecimal digits"),
        ("/proof/0x" + "0" * 64 + "/0", 404, "no transaction with that hash"),
        ("/proof/0x" + "0" * 64 + "/99999999", 400, "small whole number"),
    ],
)
def test_bad_input_gets_a_friendly_page(site: Site, path: str, status: int, says: str) -> None:
    answer = httpx.get(site.url + path)
    assert answer.status_code == status
    assert answer.headers["content-type"].startswith("text/html")
    assert says in answer.text and "Nothing was changed" in answer.text
    assert "Traceback" not in answer.text


def test_pages_escape_what_they_echo_and_bound_what_they_read(site: Site) -> None:
    hostile = '</textarea><script>alert("x")</script>'
    answer = httpx.post(site.url + "/audit/receipt", data={"receipt": hostile})
    assert answer.status_code == 200
    assert "<script>alert" not in answer.text and "&lt;/textarea&gt;&lt;script&gt;" in answer.text
    assert 'data-found="no"' in answer.text
    assert "script-src" not in answer.headers["content-security-policy"]  # so no script may run at all
    too_big = httpx.post(site.url + "/audit/receipt", data={"receipt": "x" * 20_000})
    assert too_big.status_code == 413 and "at most 16 KiB" in too_big.text
    wrong_kind = httpx.post(site.url + "/audit/receipt", files={"receipt": ("r.json", b"{}")})
    assert wrong_kind.status_code == 400 and "Send the form from the page" in wrong_kind.text


def test_proof_of_an_expiry_and_of_a_refund(site: Site) -> None:
    tx, index = site.sweep
    expired = httpx.get(f"{site.url}/proof/{tx}/{index}")
    assert expired.status_code == 200 and 'id="event-name">Expired<' in expired.text
    assert 'data-matches="yes"' in expired.text  # keccak(member, expiry month) recomputed
    refund = site.ops["refund"]
    page = httpx.get(f"{site.url}/proof/{refund['tx_hash']}/{refund['log_index']}")
    assert page.status_code == 200 and 'id="event-name">Reversed<' in page.text
    assert 'data-matches="yes"' in page.text and site.ops["R-1"]["receipt_ref"] in page.text
    # The receipt itself (it names the member and the purchase) is not on the page.
    assert "one cup returned" not in page.text and '"receipt_id"' not in page.text


def test_lookups_are_limited_per_client() -> None:
    from gateway.web.pages import ClientLimiter

    limiter = ClientLimiter(rate=0.001, burst=3)
    assert [limiter.allow("10.0.0.1") for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("10.0.0.2")  # another client has its own allowance


def test_auditor_page_shows_campaign_results_and_debt_the_api_returns(site: Site, browser: Any) -> None:
    """(r2) Bean & Leaf runs a campaign (5 points on top of each purchase) and an earn naming
    it goes on-chain with its own signature (the gateway's campaign endpoint is not this
    test's); the page's campaign table and member debt equal the API's. Last in the module:
    it changes the supply the tests above check."""
    from eth_utils import keccak

    from gateway.chain.campaigns import create_campaign
    from gateway.chain.ledger import SignedEarn
    from gateway.db.models import Partner
    from partners.signing import CampaignEarnMessage, CampaignMessage, sign

    runtime = site.runtime
    bean = site.partners["Bean & Leaf"]
    pid = int(bean["partner_id"])
    with runtime.sessions() as session:
        encrypted = session.get(Partner, pid).encrypted_key  # type: ignore[union-attr]
    key = runtime.private_key(str(encrypted))
    ana = site.call("GET", "/v1/members/ana", bean["api_key"]).json()["address"]
    now, deadline = runtime.chain.latest_timestamp(), runtime.chain.latest_timestamp() + 30 * DAY
    nonce = 2**200  # far from the gateway's own nonces
    terms = CampaignMessage(pid, now, now + 10 * DAY, 0, 5, 0, 0b111, 100, nonce, deadline)
    ledger = runtime.ledger
    with runtime.operator_lock:
        cid = create_campaign(ledger, runtime.operator, terms, sign(ledger.domain, terms, key))
        earns = []
        for i, spend in enumerate((2_000, 3_000)):
            msg = CampaignEarnMessage(pid, ana, spend, cid, keccak(text=f"C-{i}"), nonce + 1 + i, deadline, 10**6)
            earns.append(SignedEarn(msg, sign(ledger.domain, msg, key)))
        result = ledger.earn_batch(runtime.operator, earns)
    assert not result.rejections() and [e.args["bonus"] for e in result.named("Earned")] == [5, 5]

    api = site.call("GET", "/v1/audit/metrics", site.admin_key).json()
    assert [c for c in api["campaigns"] if c["campaign_id"] == cid] == [
        {"campaign_id": cid, "partner_id": pid, "bonus_points": 10, "purchases": 2, "earns_named": 2,
         "spend_minor": 5_000, "members_reached": 1}
    ]  # fmt: skip
    browser.get(site.url + "/audit")
    rows = all_of(browser, "#campaigns tbody tr")
    assert len(rows) == len(api["campaigns"])
    for row, c in zip(rows, api["campaigns"], strict=True):
        cells = [td.text for td in row.find_elements("css selector", "td")]
        assert row.get_attribute("data-campaign") == str(c["campaign_id"])
        assert [int(x.replace(",", "")) for x in (cells[2], cells[3], cells[4], cells[6])] == [
            c["bonus_points"], c["purchases"], c["earns_named"], c["members_reached"]
        ]  # fmt: skip
        spend = row.find_elements("css selector", "td")[5].get_attribute("data-minor")
        assert int(spend) == c["spend_minor"]
    assert int(find(browser, "#m-debt").get_attribute("data-points")) == api["debt_outstanding"] == 0
    browser.execute_script("document.getElementById('campaign-results').scrollIntoView()")
    screenshot(browser, "audit-campaigns")
