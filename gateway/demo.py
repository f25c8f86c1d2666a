"""`loyalty demo`: the coalition's story on the embedded chain, told in the terminal."""

from __future__ import annotations

import time

from eth_utils import keccak
from rich.console import Console
from rich.table import Table

from gateway.chain.backends import EmbeddedChain
from gateway.chain.ledger import EarnRecord, Ledger, LedgerEvent, Sender, SignedEarn, SignedRedeem, SignedReverse
from gateway.config import get_settings
from gateway.ledger.rules import month_label, month_of, month_start
from partners.signing import EarnMessage, Receipt, RedeemMessage, ReverseMessage, address_of, sign

DAY = 86_400
FAR = 2**40


def _key(label: str) -> str:
    # Demo keys are derived from public labels: fine for a demo, never for real partners.
    return "0x" + keccak(text=f"loyalty-demo:{label}").hex()


def run_demo(console: Console, *, fast: bool = False) -> None:
    started = time.perf_counter()
    settings = get_settings()
    chain = EmbeddedChain()
    operator = Sender(chain.w3, chain.dev_keys[0])
    relayer = Sender(chain.w3, chain.dev_keys[1])
    nonces = iter(range(1, 10**9))
    events: list[LedgerEvent] = []

    def section(title: str) -> None:
        console.rule(f"[bold]{title}")

    section("1. The operator deploys the ledger")
    ledger = Ledger.deploy(operator, settings.coalition)
    console.print(
        f"CoalitionPoints at {ledger.address}, chain id {ledger.chain_id}, "
        f"block {ledger.deployment_block}; tiers: "
        + ", ".join(f"{t.name} from {t.threshold} (x{t.multiplier_bps / 10_000:g})" for t in settings.coalition.tiers)
    )

    section("2. Three partners join, each with its own earn rate and signing key")
    partners = {}
    for name, currency, rate, per, allowance in [
        ("Bean & Leaf coffee", "EUR", 1, 100, 1_000_000),  # 1 point per euro
        ("FreshMart grocer", "GBP", 3, 200, 1_000_000),  # 1.5 points per pound
        ("Sakura Air", "JPY", 1, 20, 5_000_000),  # 5 points per 100 yen
    ]:
        key = _key(name)
        pid = ledger.add_partner(
            operator,
            signer=address_of(key),
            rate_points=rate,
            rate_per_minor_units=per,
            currency=currency,
            allowance=allowance,
        )
        partners[name] = (pid, key, currency)
        console.print(
            f"partner {pid}: {name} ({currency}), {rate} point(s) per {per} minor units, allowance {allowance:,} points"
        )

    section("3. Members enrol")
    members = {label: _key(f"member-{label}") for label in ["ana", "ben", "chloe"]}
    for label, key in members.items():
        console.print(f"{label}: address {address_of(key)}")

    def earn(partner: str, member: str, amount: int, receipt_id: str) -> list[LedgerEvent]:
        pid, key, currency = partners[partner]
        receipt = Receipt(
            kind="earn", partner_id=pid, receipt_id=receipt_id, member_id=member, amount_minor=amount, currency=currency
        )
        message = EarnMessage(pid, address_of(members[member]), amount, receipt.ref(), next(nonces), FAR)
        result = ledger.earn_batch(relayer, [SignedEarn(message, sign(ledger.domain, message, key))])
        events.extend(result.events)
        return result.events

    section("4. Purchases across partners (one batch per till here; the gateway batches many)")
    purchases = [
        ("Bean & Leaf coffee", "ana", 450, "BL-0001"),
        ("FreshMart grocer", "ana", 8_720, "FM-0001"),
        ("Sakura Air", "ben", 98_000, "SA-0001"),
        ("Bean & Leaf coffee", "chloe", 1_250, "BL-0002"),
        ("FreshMart grocer", "ben", 15_640, "FM-0002"),
    ]
    if fast:
        purchases = purchases[:3]
    records = {}
    for partner, label, amount, receipt_id in purchases:
        evs = earn(partner, label, amount, receipt_id)
        earned = next(e for e in evs if e.name == "Earned")
        records[receipt_id] = evs
        console.print(
            f"{label} spends {amount:,} minor units at {partner}: +{earned.args['points']} points "
            f"(receipt {receipt_id})"
        )

    section("5. A tier upgrade: Ben's airline trip lifts his qualifying points")
    ben = address_of(members["ben"])
    tier_names = [t.name for t in settings.coalition.tiers]
    console.print(f"ben: {ledger.qualifying_points(ben)} qualifying points -> tier {tier_names[ledger.tier_of(ben)]}")
    evs = earn("Bean & Leaf coffee", "ben", 1_000, "BL-0003")
    console.print(
        f"ben's next coffee of 10.00 EUR earns {next(e for e in evs if e.name == 'Earned').args['points']}"
        " points instead of 10"
    )

    section("6. Redemptions, signed by the member (EIP-712)")
    ana_key = members["ana"]
    grocer_id = partners["FreshMart grocer"][0]
    message = RedeemMessage(address_of(ana_key), grocer_id, 100, keccak(text="FM-R-0001"), next(nonces), FAR)
    result = ledger.redeem_batch(relayer, [SignedRedeem(message, sign(ledger.domain, message, ana_key))])
    events.extend(result.events)
    console.print(f"ana pays 100 points at FreshMart; balance now {ledger.balance_of(address_of(ana_key))}")

    section("7. A forged redemption is refused on-chain")
    forged = RedeemMessage(ben, grocer_id, 50, keccak(text="FM-R-0002"), next(nonces), FAR)
    result = ledger.redeem_batch(relayer, [SignedRedeem(forged, sign(ledger.domain, forged, _key("mallory")))])
    events.extend(result.events)
    for index, error in result.rejections():
        console.print(f"operation {index} rejected by the contract: [red]{error}[/red]")
    console.print(f"ben's balance is untouched: {ledger.balance_of(ben)}")

    section("8. A refund: the grocer reverses part of Ana's purchase")
    fm = records["FM-0001"]  # the refund proves the original earn against its batch's root
    committed = next(e for e in fm if e.name == "EarnBatchCommitted")
    earned = next(e for e in fm if e.name == "Earned")
    month = ledger.month_of(int(chain.w3.eth.get_block(earned.block_number)["timestamp"]))
    record = EarnRecord(
        committed.args["batchId"],
        grocer_id,
        earned.args["member"],
        earned.args["receiptRef"],
        earned.args["spend"],
        earned.args["points"],
        month,
        [],
    )
    reverse = ReverseMessage(grocer_id, record.leaf(), 30, keccak(text="FM-REFUND-0001"), next(nonces), FAR)
    result = ledger.reverse_batch(
        relayer, [SignedReverse(reverse, sign(ledger.domain, reverse, partners["FreshMart grocer"][1]), record)]
    )
    events.extend(result.events)
    console.print(f"30 points reversed; ana's balance {ledger.balance_of(address_of(ana_key))}")

    section("9. Time passes: points expire at the end of the 12th full month after earning")
    now = month_of(chain.latest_timestamp())
    chain.travel_to(month_start(now + 6) + DAY)
    console.print(f"{month_label(now + 6)}: chloe flies with Sakura Air")
    earn("Sakura Air", "chloe", 20_000, "SA-0002")
    chain.travel_to(month_start(now + 13) + DAY)
    console.print(f"the chain clock is now {month_label(month_of(chain.latest_timestamp()))}")
    everyone = [address_of(k) for k in members.values()]
    result = ledger.expire(relayer, everyone)
    events.extend(result.events)
    for e in result.named("Expired"):
        console.print(
            f"{e.args['member']}: {e.args['points']} points expired (end of {month_label(e.args['expiryMonth'])})"
        )

    section("10. Balances, read from the chain")
    table = Table("member", "balance", "tier", "qualifying")
    for label, key in members.items():
        address = address_of(key)
        table.add_row(
            label,
            str(ledger.balance_of(address)),
            tier_names[ledger.tier_of(address)],
            str(ledger.qualifying_points(address)),
        )
    console.print(table)
    totals = Table("partner", "issued", "reversed", "redeemed at it", "allowance left")
    for name, (pid, _, _) in partners.items():
        p = ledger.partner(pid)
        totals.add_row(name, str(p["issued"]), str(p["reversed"]), str(p["redeemed"]), f"{p['allowance']:,}")
    console.print(totals)
    issued = sum(ledger.partner(pid)["issued"] for pid, _, _ in partners.values())
    burned = sum(ledger.partner(pid)["reversed"] + ledger.partner(pid)["redeemed"] for pid, _, _ in partners.values())
    expired = sum(e.args["points"] for e in events if e.name == "Expired")
    supply = ledger.total_supply()
    ok = supply == issued - burned - expired
    console.print(
        f"supply {supply} = issued {issued} - redeemed/reversed {burned} - expired {expired}: "
        + ("[green]balances[/green]" if ok else "[red]DOES NOT BALANCE[/red]")
    )
    console.print(
        f"demo finished in {time.perf_counter() - started:.1f} s. The gateway (`loyalty serve`), the "
        "audit and settlement commands come next (see docs/)."
    )
    chain.close()
    if not ok:
        raise SystemExit(1)
