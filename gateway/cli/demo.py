"""`loyalty demo`: the coalition's whole story on the embedded chain, told in the terminal.

Everything goes through the real gateway over HTTP (started here on a free port) with the
partner SDK, as tills would use it; only the operator's chores (the expiry sweep) and one
attacker who bypasses the gateway talk to the chain directly. The data directory it leaves
(`<data dir>/demo`, replaced on each run) is what `bash scripts/run` then serves, so the
member and auditor pages show this story.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from eth_utils import keccak
from rich.console import Console
from rich.table import Table
from sqlalchemy import select

from gateway.api.main import create_app
from gateway.app.bootstrap import open_runtime
from gateway.app.runtime import Runtime
from gateway.audit.metrics import metrics_of
from gateway.audit.metrics_charts import metrics_text
from gateway.audit.report import default_period, load_history, statement_text, write_folder
from gateway.audit.verify import read_index, verify_chain
from gateway.chain.backends import free_port
from gateway.chain.ledger import SignedRedeem
from gateway.cli import demo_r2
from gateway.core.config import Settings, get_settings
from gateway.db.models import Partner
from gateway.points.rules import month_label, month_of, month_start
from partners.client import PartnerClient
from partners.errors import GatewayError
from partners.redemption import sign_redemption
from partners.signing import EarnMessage, RedeemMessage, address_of, sign

DAY = 86_400


def _key(label: str) -> str:
    # Demo keys are derived from public labels: fine for a demo, never for real partners.
    return "0x" + keccak(text=f"loyalty-demo:{label}").hex()


class _Gateway:
    """`create_app` served by uvicorn in a thread on a free port: the real HTTP gateway."""

    def __init__(self, runtime: Runtime) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(create_app(runtime), host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="demo-gateway", daemon=True)

    def __enter__(self) -> _Gateway:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the demo gateway did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def demo_settings() -> Settings:
    settings = get_settings()
    # Short batch windows: the story waits for each step's confirmation.
    gateway = settings.gateway.model_copy(
        update={"batch_window_ms": 20, "confirmations": 0, "programme_watch_seconds": 0.2}
    )
    # The notice period a real coalition runs with (SPEC section 3): new partners and
    # programme changes wait a week, and the story shows both.
    coalition = settings.coalition.model_copy(update={"notice_period_seconds": 7 * DAY})
    return settings.model_copy(update={"gateway": gateway, "coalition": coalition, "database_url": None})


def run_demo(
    console: Console,
    *,
    data_dir: Path | None = None,
    fast: bool = False,
    host: str | None = None,
    port: int | None = None,
) -> Path:
    """Tells the story; returns the data directory it leaves. Raises SystemExit(1) when the
    audit finds a discrepancy or the statement does not balance. `host` and `port` are where
    `loyalty serve` will show the pages afterwards (the links at the end)."""
    started = time.perf_counter()
    settings = demo_settings()
    directory = (data_dir or settings.gateway.data_dir / "demo").resolve()
    if directory.exists():
        shutil.rmtree(directory)

    def section(title: str) -> None:
        console.rule(f"[bold]{title}")

    section("1. The operator deploys the ledger and starts the gateway")
    runtime = open_runtime(settings, data_dir=directory, network="embedded", log=False)
    ledger = runtime.ledger
    console.print(
        f"CoalitionPoints at {ledger.address}, chain id {ledger.chain_id}, block {ledger.deployment_block}; tiers: "
        + ", ".join(f"{t.name} from {t.threshold} (x{t.multiplier_bps / 10_000:g})" for t in settings.coalition.tiers)
    )
    try:
        with _Gateway(runtime) as gateway:
            console.print(f"gateway on {gateway.url} (the same API `loyalty serve` offers), data in {directory}")
            ok = _story(console, section, runtime, gateway.url, directory, fast)
    finally:
        runtime.close()
    console.rule("[bold]Where to look next")
    host, port = host or settings.gateway.host, port or settings.gateway.port
    base = f"http://{host}:{port}"
    serve = f"loyalty serve --data-dir {directory}" + ("" if port == 8000 else f" --port {port}")
    console.print(
        f"The pages of this story: [bold]bash scripts/run[/bold] (or [bold]{serve}[/bold]), then open "
        f"{base}/members/view?q=ana (a member), {base}/audit (the auditor's page) and {base}/docs (the API)."
    )
    console.print(
        f"The auditor's report folder: {directory / 'report'} "
        "(chart.png, settlement.*, metrics.*, flows.csv, verify.txt)"
    )
    console.print(f"demo finished in {time.perf_counter() - started:.1f} s")
    if not ok:
        raise SystemExit(1)
    return directory


def _story(
    console: Console, section: Callable[[str], None], runtime: Runtime, url: str, directory: Path, fast: bool
) -> bool:
    ledger = runtime.ledger
    chain = runtime.chain
    admin = httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {(directory / 'admin.key').read_text().strip()}"}, timeout=60
    )

    section("2. Three partners join: different earn rates, currencies and key custody")
    fm_key = _key("FreshMart grocer")
    clients: dict[str, PartnerClient] = {}
    api_keys: dict[str, str] = {}
    ids: dict[str, int] = {}
    for name, currency, rate, per, signer in [
        ("Bean & Leaf coffee", "EUR", 1, 100, None),  # 1 point per euro; the gateway keeps its key
        ("FreshMart grocer", "GBP", 3, 200, fm_key),  # 1.5 points per pound; signs at its own tills
        ("Sakura Air", "JPY", 1, 20, None),  # 5 points per 100 yen (the yen has no minor unit)
    ]:
        body: dict[str, Any] = {
            "name": name,
            "currency": currency,
            "earn_rate": {"points": rate, "per_minor_units": per},
            "allowance": 5_000_000,
        }
        if signer:
            body["signer_address"] = address_of(signer)
        created = admin.post("/v1/partners", json=body).raise_for_status().json()
        clients[name] = PartnerClient(url, created["api_key"], signing_key=signer, partner_id=created["partner_id"])
        api_keys[name], ids[name] = created["api_key"], created["partner_id"]
        custody = "self-custody: signs with the partner SDK" if signer else "managed: the gateway signs"
        console.print(
            f"partner {created['partner_id']}: {name} ({currency}), {rate} point(s) per {per} minor units; {custody}"
        )
    bean, fresh, sakura = clients["Bean & Leaf coffee"], clients["FreshMart grocer"], clients["Sakura Air"]
    notice = int(ledger.notice_period())
    _travel(runtime, chain.latest_timestamp() + notice + 60)
    console.print(
        f"a new issuer issues its first point only after the {notice // DAY}-day notice period, so every member "
        "and partner sees it first: a week passes"
    )

    section("3. Members enrol: two with a card and PIN (custodial), one with a wallet")
    ben_key = _key("member-ben")
    bean.enroll_member("ana", pin="2468")
    sakura.enroll_member("ben", address=address_of(ben_key))
    fresh.enroll_member("chloe", pin="1357")
    for member_id in ("ana", "ben", "chloe"):
        view = bean.member(member_id)
        kind = "wallet (self-custody)" if member_id == "ben" else "card + PIN (custodial key held encrypted)"
        console.print(f"{member_id}: {view.address}, {kind}")

    section("4. Purchases across partners, batched on-chain by the gateway")
    purchases = [
        (bean, "ana", "BL-0001", 450, "EUR"),
        (fresh, "ana", "FM-0001", 8_720, "GBP"),
        (sakura, "ben", "SA-0001", 98_000, "JPY"),
        (bean, "chloe", "BL-0002", 1_250, "EUR"),
        (fresh, "chloe", "FM-0002", 15_640, "GBP"),
    ]
    if fast:
        purchases = purchases[:3]
    accepted = [
        (client, who, client.earn(who, receipt, amount, currency), receipt, amount, currency)
        for client, who, receipt, amount, currency in purchases
    ]
    for client, who, op, receipt, amount, currency in accepted:
        done = client.wait_for(op.operation_id)
        console.print(
            f"{who} pays {amount:,} minor units of {currency} (receipt {receipt}): +{done.points} points, "
            f"block {done.block_number}, tx {str(done.tx_hash)[:12]}..."
        )

    section("5. A tier upgrade: one more flight lifts Ben to Silver")
    before = bean.member("ben")
    console.print(f"ben has {before.qualifying_points} qualifying points over the last 12 months: tier {before.tier}")
    flight = sakura.earn("ben", "SA-0002", 6_000, "JPY", wait=True)
    ben = bean.member("ben")
    console.print(
        f"a short flight: +{flight.points} points; {ben.qualifying_points} qualifying points: tier {ben.tier}"
    )
    coffee = bean.earn("ben", "BL-0003", 1_000, "EUR", wait=True)
    console.print(f"ben's next coffee of 10.00 EUR earns {coffee.points} points (x1.25) instead of 10")

    section("6. Redemptions: a PIN at the grocer, a wallet signature at the café")
    paid = fresh.redeem("ana", "FM-R-0001", 100, pin="2468", wait=True)
    console.print(f"ana pays 100 points at FreshMart with her PIN (block {paid.block_number})")
    try:
        fresh.redeem("chloe", "FM-R-0002", 10, pin="0000")
    except GatewayError as refused:
        console.print(f"a wrong PIN for chloe: [red]{refused.status} {refused.code}[/red], nothing recorded")
    # A wallet dates its signature by its own clock; the demo's chain runs a notice period ahead.
    request = bean.redemption_request("ben", "BL-R-0001", 1_000, valid_for=notice + DAY)
    authorization = sign_redemption(request, ben_key)  # what ben's wallet does (EIP-712)
    paid = bean.redeem("ben", "BL-R-0001", 1_000, authorization=authorization, wait=True)
    console.print(f"ben signs in his wallet and pays 1,000 points at Bean & Leaf (block {paid.block_number})")

    section("7. A reversal: the grocer takes back the points of part of Ana's purchase")
    refund = fresh.reverse("FM-0001", amount_minor=2_000, reason="returned a jar", member_id="ana", wait=True)
    console.print(f"20.00 GBP of 87.20 GBP refunded: -{refund.points} points, signed by FreshMart's own key")

    section("8. Forgeries are refused, by the gateway and by the contract")
    fresh_id = ids["FreshMart grocer"]
    forged = EarnMessage(fresh_id, address_of(_key("mallory")), 10**9, keccak(text="FAKE-1"), 7, 2**40)
    response = httpx.post(
        f"{url}/v1/earn",
        headers={"Authorization": f"Bearer {api_keys['FreshMart grocer']}"},
        json={
            "member_id": "chloe",
            "receipt_id": "FAKE-1",
            "amount_minor": 10**9,
            "currency": "GBP",
            "issued_at": "2026-01-01T00:00:00+00:00",
            "partner_signature": {
                "signature": sign(ledger.domain, forged, _key("mallory")).hex(),
                "nonce": 7,
                "deadline": 2**40,
            },
        },
        timeout=30,
    )
    code = response.json()["error"]["code"]
    console.print(f"an earn signed with the wrong key: [red]{response.status_code} {code}[/red], nothing stored")
    ben_address = address_of(ben_key)
    theft = RedeemMessage(ben_address, fresh_id, 500, keccak(text="THEFT-1"), 99, 2**40)
    result = ledger.redeem_batch(runtime.relayer, [SignedRedeem(theft, sign(ledger.domain, theft, _key("mallory")))])
    for index, error in result.rejections():
        console.print(f"straight to the contract, bypassing the gateway: operation {index} [red]{error}[/red]")
    console.print(f"ben's balance is untouched: {ledger.balance_of(ben_address)}")

    demo_r2.award_and_return(console, section, bean, fresh)
    demo_r2.programme_change(console, section, runtime, admin, bean, lambda t: _travel(runtime, t))
    demo_r2.clawback(console, section, fresh, sakura)

    section("12. Months pass: points expire after 12 full months")
    now = month_of(chain.latest_timestamp())
    _travel(runtime, month_start(now + 6) + DAY)
    late = sakura.earn("chloe", "SA-0003", 20_000, "JPY", wait=True)
    console.print(
        f"{month_label(now + 6)}: chloe flies with Sakura Air, +{late.points} points: {late.debt_repaid} pay her "
        f"debt first (DebtRepaid), the rest reach her balance"
    )
    _travel(runtime, month_start(now + 13) + DAY)
    console.print(f"the chain clock is now {month_label(month_of(chain.latest_timestamp()))}")
    with runtime.sessions() as session:
        names = {p.id: p.name for p in session.scalars(select(Partner))}
    by_address = {bean.member(m).address: m for m in ("ana", "ben", "chloe")}
    swept = ledger.expire(runtime.relayer, list(by_address))  # anyone may sweep; the operator does it monthly
    for e in swept.named("Expired"):
        month = month_label(e.args["expiryMonth"])
        console.print(
            f"{by_address[e.args['member']]}: {e.args['points']} points earned in the first month expired ({month})"
        )

    section("13. Balances, read from the chain through the gateway")
    table = Table("member", "balance", "tier", "qualifying", "expiring next", "block")
    for member_id in ("ana", "ben", "chloe"):
        view = bean.member(member_id)
        nxt = view.expiring[0] if view.expiring else None
        table.add_row(
            member_id,
            str(view.balance),
            str(view.tier),
            str(view.qualifying_points),
            f"{nxt.points} at end of {nxt.month}" if nxt else "-",
            str(view.block_number),
        )
    console.print(table)

    section("14. The audit: every point replayed from chain events and compared")
    with runtime.sessions() as session:
        indexed = read_index(session)
    report = verify_chain(chain.w3, ledger, from_block=ledger.deployment_block, index=indexed)
    console.print(
        f"blocks {report.from_block}..{report.to_block}: {report.events} events, {report.operations} operations, "
        f"{report.members} members, supply {report.supply}; compared with {len(indexed.operations)} indexed operations "
        "and their receipts"
    )
    for d in report.discrepancies:
        console.print(f"[red]discrepancy[/red] {d}")
    if report.ok:
        console.print("[green]no discrepancy[/green]: balances, tiers, supply, partner totals and receipts agree")

    section("15. The settlement statement, from chain events alone")
    history = load_history(chain.w3, ledger, from_block=ledger.deployment_block)
    period_from, period_to = default_period(history)
    folder = write_folder(
        directory / "report",
        history,
        period_from=period_from,
        period_to=period_to,
        network="embedded",
        names=names,
        verify=report,
        index_compared=True,
    )
    console.print(statement_text(folder.statement, names))

    section("16. Programme metrics, from chain events alone")
    console.print(
        metrics_text(
            metrics_of(history.events, history.times, period_from=period_from, period_to=period_to), names=names
        )
    )
    for client in clients.values():
        client.close()
    admin.close()
    return report.ok and folder.statement.balanced


def _travel(runtime: Runtime, timestamp: int) -> None:
    """Moves the development chain's clock; the gateway signs deadlines from it."""
    runtime.chain.travel_to(timestamp)
    runtime.chain_time = max(runtime.chain_time, timestamp)
