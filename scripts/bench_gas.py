"""Gas per operation of the ledger's batches, beside a plain OpenZeppelin ERC-20 batched mint.

Runs on the embedded chain (gas is the same on every EVM chain). Per-operation figures are
the whole transaction's gas (base cost and calldata included) divided by the batch size.
A warm-up operation first initializes the one-time global slots of both contracts, so the
figures are the steady state a running network sees.

    .venv/bin/python scripts/bench_gas.py [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import platform
from datetime import UTC, datetime
from itertools import count

from eth_abi import encode
from eth_utils import keccak
from hexbytes import HexBytes
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from gateway.chain.backends import EmbeddedChain
from gateway.chain.campaigns import create_campaign
from gateway.chain.ledger import (
    Ledger,
    Sender,
    SignedAward,
    SignedEarn,
    SignedRedeem,
    SignedRefund,
    SignedReverse,
    artifact,
)
from gateway.core.config import get_settings
from partners.signing import (
    AwardMessage,
    CampaignEarnMessage,
    CampaignMessage,
    EarnMessage,
    RedeemMessage,
    RefundMessage,
    ReverseMessage,
    address_of,
    sign,
)

SIZES = (1, 10, 100)
FAR = 2**40


def key(label: str) -> str:
    return "0x" + keccak(text=f"bench-gas:{label}").hex()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the figures to this file")
    parser.add_argument("--largest", type=int, default=400, help="also measure one earn batch of this size")
    args = parser.parse_args()
    console = Console()

    chain = EmbeddedChain()
    relayer = Sender(chain.w3, chain.dev_keys[0])
    ledger = Ledger.deploy(relayer, get_settings().coalition)
    partner_key = key("partner")
    pid = ledger.add_partner(
        relayer, signer=address_of(partner_key), rate_points=1, rate_per_minor_units=1, currency="EUR", allowance=10**15
    )
    plain = relayer.send(None, HexBytes(artifact("PlainMintToken")["bytecode"]))["contractAddress"]
    mint_selector = keccak(text="mintBatch(address[],uint256[])")[:4]
    nonces = count(1)
    member_ids = count()

    def new_members(n: int) -> list[tuple[str, str]]:
        keys = [key(f"member-{next(member_ids)}") for _ in range(n)]
        return [(k, address_of(k)) for k in keys]

    def earn(members: list[tuple[str, str]]) -> tuple[int, list[SignedReverse]]:
        ops = []
        for _, address in members:
            m = EarnMessage(pid, address, 1_000, keccak(text=f"r{next(nonces)}"), next(nonces), FAR)
            ops.append(SignedEarn(m, sign(ledger.domain, m, partner_key)))
        result = ledger.earn_batch(relayer, ops, gas=25_000_000)
        assert not result.rejections(), result.rejections()
        reversals = []
        for record in result.earn_records():
            m = ReverseMessage(pid, record.leaf(), 1, keccak(text=f"refund{next(nonces)}"), next(nonces), FAR)
            reversals.append(SignedReverse(m, sign(ledger.domain, m, partner_key), record))
        return result.gas_used, reversals

    def redeem(members: list[tuple[str, str]]) -> tuple[int, list[SignedRefund]]:
        ops = []
        for member_key, address in members:
            m = RedeemMessage(address, pid, 2, keccak(text=f"red{next(nonces)}"), next(nonces), FAR)
            ops.append(SignedRedeem(m, sign(ledger.domain, m, member_key)))
        result = ledger.redeem_batch(relayer, ops, gas=25_000_000)
        assert not result.rejections(), result.rejections()
        refunds = []
        for record in result.redemption_records():
            m = RefundMessage(pid, record.leaf(), 1, keccak(text=f"return{next(nonces)}"), next(nonces), FAR)
            refunds.append(SignedRefund(m, sign(ledger.domain, m, partner_key), record))
        return result.gas_used, refunds

    # (r2) A campaign of the partner's running for the whole measurement: +50% and 1 point per
    # purchase for every tier, with a budget no batch exhausts; earns naming it get a bonus.
    start = chain.latest_timestamp()
    terms = CampaignMessage(pid, start, start + 365 * 86_400, 5_000, 1, 0, 0xFF, 10**12, next(nonces), FAR)
    campaign_id = create_campaign(ledger, relayer, terms, sign(ledger.domain, terms, partner_key))

    def campaign_earn(members: list[tuple[str, str]]) -> int:
        ops = []
        for _, address in members:
            m = CampaignEarnMessage(
                pid, address, 1_000, campaign_id, keccak(text=f"c{next(nonces)}"), next(nonces), FAR
            )
            ops.append(SignedEarn(m, sign(ledger.domain, m, partner_key)))
        result = ledger.earn_batch(relayer, ops, gas=25_000_000)
        assert not result.rejections(), result.rejections()
        assert all(e.args["bonus"] == 501 for e in result.named("Earned")), "every earn got its bonus"
        return result.gas_used

    def award(members: list[tuple[str, str]]) -> int:
        ops = []
        for _, address in members:
            m = AwardMessage(pid, address, 10, 1, keccak(text=f"aw{next(nonces)}"), next(nonces), FAR)
            ops.append(SignedAward(m, sign(ledger.domain, m, partner_key)))
        result = ledger.award_batch(relayer, ops, gas=25_000_000)
        assert not result.rejections(), result.rejections()
        return result.gas_used

    def plain_mint(n: int) -> int:
        recipients = [address for _, address in new_members(n)]
        data = mint_selector + encode(["address[]", "uint256[]"], [recipients, [10] * n])
        return int(relayer.send(plain, data, gas=25_000_000)["gasUsed"])

    # Warm-up: the first issue ever, the first nonce word, the first redemption batch (its
    # counter's slot), the first plain mint.
    warm = new_members(1)
    earn(warm)
    campaign_earn(warm)  # the campaign's spent slot, written once before any measured batch
    redeem(warm)
    plain_mint(1)

    rows: dict[int, dict[str, float]] = {}
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("measuring batches", total=len(SIZES))
        for n in SIZES:
            members = new_members(n)
            new_gas, reversals = earn(members)
            existing_gas, _ = earn(members)
            campaign_gas = campaign_earn(members)
            award_gas = award(members)
            redeem_gas, refunds = redeem(members)
            reverse_result = ledger.reverse_batch(relayer, reversals, gas=25_000_000)
            assert not reverse_result.rejections(), reverse_result.rejections()
            refund_result = ledger.refund_batch(relayer, refunds, gas=25_000_000)
            assert not refund_result.rejections(), refund_result.rejections()
            rows[n] = {
                "earn_new": new_gas / n,
                "earn_existing": existing_gas / n,
                "campaign_earn_existing": campaign_gas / n,
                "award_existing": award_gas / n,
                "redeem": redeem_gas / n,
                "reverse": reverse_result.gas_used / n,
                "refund": refund_result.gas_used / n,
                "oz_mint_new": plain_mint(n) / n,
            }
            progress.advance(task)
        largest_gas, _ = earn(new_members(args.largest))

    table = Table(title="gas per operation (whole transaction / batch size)")
    for column in (
        "batch",
        "earn, new member",
        "earn, existing",
        "campaign earn, existing",
        "award, existing",
        "redemption",
        "reversal",
        "refund",
        "OZ mint, new holder",
        "earn new / OZ mint",
    ):
        table.add_column(column, justify="right")
    for n, r in rows.items():
        table.add_row(
            str(n),
            *(
                f"{r[k]:,.0f}"
                for k in (
                    "earn_new",
                    "earn_existing",
                    "campaign_earn_existing",
                    "award_existing",
                    "redeem",
                    "reverse",
                    "refund",
                    "oz_mint_new",
                )
            ),
            f"{r['earn_new'] / r['oz_mint_new']:.2f}",
        )
    console.print(table)
    console.print(
        f"largest batch measured: {args.largest} earns to new members = {largest_gas:,} gas "
        f"({largest_gas / args.largest:,.0f} per earn)"
    )

    figures = {
        "earn_new_gas": round(rows[100]["earn_new"]),
        "earn_existing_gas": round(rows[100]["earn_existing"]),
        "award_existing_gas": round(rows[100]["award_existing"]),
        "redeem_gas": round(rows[100]["redeem"]),
        "reverse_gas": round(rows[100]["reverse"]),
        "refund_gas": round(rows[100]["refund"]),
        "oz_mint_new_gas": round(rows[100]["oz_mint_new"]),
        "earn_new_vs_oz_ratio": round(rows[100]["earn_new"] / rows[100]["oz_mint_new"], 3),
        "largest_batch": args.largest,
        "largest_batch_gas": largest_gas,
        "by_batch_size": {str(n): {k: round(v) for k, v in r.items()} for n, r in rows.items()},
        "compiler": artifact()["compiler"],
        "machine": f"{platform.machine()} {platform.python_implementation()} {platform.python_version()}",
        "date": datetime.now(UTC).date().isoformat(),
    }
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(figures, fh, indent=2)
        console.print(f"wrote {args.json}")
    chain.close()


if __name__ == "__main__":
    main()
