"""Worst-case gas of each ledger operation at the maximum expiry policy (120 months).

Builds the member histories that make each operation do the most work the contract allows:
121 live buckets (the bound: every month of now .. now + 120 and "never"), or 120 expired
buckets behind a never-expiring one that the operation must sweep first. Prints each
figure as the gas of a one-operation transaction (21,000 base and calldata included); the
gateway's gas budgets (gateway/chain/gas.py) are these figures with a margin.

    .venv/bin/python scripts/bench_worst_gas.py [--chain anvil|embedded] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
from itertools import count

from eth_utils import keccak

from gateway.chain.backends import AnvilNode, ChainBackend, EmbeddedChain
from gateway.chain.campaigns import create_campaign
from gateway.chain.ledger import (
    BatchResult,
    Ledger,
    RedemptionRecord,
    Sender,
    SignedAward,
    SignedEarn,
    SignedRedeem,
    SignedRefund,
    SignedReverse,
)
from gateway.core.config import CoalitionSettings
from gateway.points.rules import month_start
from partners.signing import (
    AwardMessage,
    CampaignEarnMessage,
    CampaignMessage,
    EarnMessage,
    MigrateMessage,
    RedeemMessage,
    RefundMessage,
    ReverseMessage,
    address_of,
    sign,
)

FAR = 2**40
MAX_POLICY = 120


def key(label: str) -> str:
    return "0x" + keccak(text=f"bench-worst-gas:{label}").hex()


class Bench:
    def __init__(self, chain: ChainBackend) -> None:
        self.chain = chain
        self.admin = Sender(chain.w3, chain.dev_keys[0])
        self.ledger = Ledger.deploy(self.admin, CoalitionSettings())
        self.partner_key = key("partner")
        self.pid = self.ledger.add_partner(
            self.admin,
            signer=address_of(self.partner_key),
            rate_points=1,
            rate_per_minor_units=1,
            currency="EUR",
            allowance=10**15,
        )
        self.ledger.call(self.admin, "setTransfersEnabled", True)
        self.nonces = count(1)

    def month(self) -> int:
        return self.ledger.current_month()

    def goto(self, month: int) -> None:
        self.chain.travel_to(month_start(month) + 14 * 86_400)

    def policy(self, months: int) -> None:
        self.ledger.call(self.admin, "setExpiryMonths", months)

    def earn(self, member: str, spend: int) -> BatchResult:
        n = next(self.nonces)
        m = EarnMessage(self.pid, member, spend, keccak(text=f"earn-{n}"), n, FAR)
        result = self.ledger.earn_batch(self.admin, [SignedEarn(m, sign(self.ledger.domain, m, self.partner_key))])
        assert not result.rejections(), result.rejections()
        return result

    def redeem(self, member_key: str, points: int) -> BatchResult:
        n = next(self.nonces)
        m = RedeemMessage(address_of(member_key), self.pid, points, keccak(text=f"redeem-{n}"), n, FAR)
        result = self.ledger.redeem_batch(self.admin, [SignedRedeem(m, sign(self.ledger.domain, m, member_key))])
        assert not result.rejections(), result.rejections()
        return result

    def refund(self, record: RedemptionRecord, points: int) -> BatchResult:
        n = next(self.nonces)
        m = RefundMessage(self.pid, record.leaf(), points, keccak(text=f"return-{n}"), n, FAR)
        signed = SignedRefund(m, sign(self.ledger.domain, m, self.partner_key), record)
        result = self.ledger.refund_batch(self.admin, [signed])
        assert not result.rejections(), result.rejections()
        return result

    def full_ring(self, member: str) -> int:
        """121 live buckets: a never-expiring tail, then policies 120 down to 1, each earn
        inserted before every bucket already there. Returns the largest earn's gas."""
        self.policy(0)
        self.earn(member, 1_000_000)
        worst = 0
        for months in range(MAX_POLICY, 0, -1):
            self.policy(months)
            worst = max(worst, self.earn(member, 100 + months).gas_used)
        assert len(self.ledger.expiring_of(member)) == MAX_POLICY + 1
        return worst


def reversal_with_debt(b: Bench, member_key: str) -> int:
    """(r2) The gas of a reversal that takes all of 121 live buckets and records a debt."""
    member = address_of(member_key)
    b.policy(0)
    record = b.earn(member, 2_000_000).earn_records()[0]
    b.redeem(member_key, 1_999_999)  # one never-expiring point left: the tail
    for months in range(MAX_POLICY, 0, -1):
        b.policy(months)
        b.earn(member, 100 + months)
    assert len(b.ledger.expiring_of(member)) == MAX_POLICY + 1
    n = next(b.nonces)
    rm = ReverseMessage(b.pid, record.leaf(), 2_000_000, keccak(text=f"refund-{n}"), n, FAR)
    rev = b.ledger.reverse_batch(b.admin, [SignedReverse(rm, sign(b.ledger.domain, rm, b.partner_key), record)])
    assert not rev.rejections() and rev.named("DebtRecorded"), rev.rejections()
    assert b.ledger.balance_of(member) == 0 and b.ledger.debt_of(member) > 0
    return rev.gas_used


def campaign_earn(b: Bench, member: str) -> int:
    """(r2) The gas of an earn naming a running campaign (every tier, 100x, the first bonus it
    issues: its spent slot goes from zero)."""
    now = b.chain.latest_timestamp()
    n = next(b.nonces)
    terms = CampaignMessage(b.pid, now - 10, now + 10**6, 1_000_000, 10**9, 0, 0xFF, 2**128 - 1, n, FAR)
    cid = create_campaign(b.ledger, b.admin, terms, sign(b.ledger.domain, terms, b.partner_key))
    n = next(b.nonces)
    m = CampaignEarnMessage(b.pid, member, 1_000, cid, keccak(text=f"earn-{n}"), n, FAR)
    result = b.ledger.earn_batch(b.admin, [SignedEarn(m, sign(b.ledger.domain, m, b.partner_key))])
    assert not result.rejections() and result.named("Earned")[0].args["bonus"], result.rejections()
    return result.gas_used


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chain", choices=("anvil", "embedded"), default="anvil")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()
    chain: ChainBackend = AnvilNode() if args.chain == "anvil" else EmbeddedChain()
    figures: dict[str, int] = {}
    try:
        b = Bench(chain)
        start = b.month()

        # Earn that inserts before 120 newer buckets (an earn after the policy was shortened).
        a_key = key("a")
        a = address_of(a_key)
        figures["earn_insert_121_buckets"] = b.full_ring(a)

        # Redemption and reversal through 121 live buckets, and a transfer of all of them
        # into a member holding the same 121 months.
        c_key = key("c")
        c = address_of(c_key)
        b.full_ring(c)
        figures["redemption_121_buckets"] = b.redeem(c_key, b.ledger.balance_of(c)).gas_used

        d = address_of(key("d"))
        b.policy(0)
        big = b.earn(d, 1_000_000)
        record = big.earn_records()[0]
        b.full_ring(d)
        n = next(b.nonces)
        rm = ReverseMessage(b.pid, record.leaf(), 1_000_000, keccak(text=f"refund-{n}"), n, FAR)
        rev = b.ledger.reverse_batch(b.admin, [SignedReverse(rm, sign(b.ledger.domain, rm, b.partner_key), record)])
        assert not rev.rejections(), rev.rejections()
        figures["reversal_121_buckets"] = rev.gas_used

        # (r2) A reversal beyond the balance, debt allowed: it burns all 121 live buckets
        # (a never-expiring tail of 1 point, 120 dated ones) and records the rest as debt.
        b.ledger.call(b.admin, "setDebtPolicy", True)
        figures["reversal_with_debt_121_buckets"] = reversal_with_debt(b, key("debtor"))
        b.ledger.call(b.admin, "setDebtPolicy", False)

        e_key = key("e")
        e = address_of(e_key)
        b.full_ring(e)
        chain.fund(e, 10**18)
        receipt = b.ledger.call(Sender(chain.w3, e_key), "transfer", a, b.ledger.balance_of(e), gas=25_000_000)
        figures["transfer_121_buckets_into_121"] = int(receipt["gasUsed"])

        # (r2) A refund whose month goes before 119 newer ring buckets and a tail: the member
        # redeemed points expiring next month, then filled every other month.
        r_key = key("r")
        r = address_of(r_key)
        b.policy(1)
        b.earn(r, 100)
        redeemed = b.redeem(r_key, 100).redemption_records()[0]
        assert redeemed.expiry_month == b.month() + 1
        b.policy(0)
        b.earn(r, 1_000_000)
        for months in range(MAX_POLICY, 1, -1):
            b.policy(months)
            b.earn(r, 100 + months)
        assert len(b.ledger.expiring_of(r)) == MAX_POLICY
        figures["refund_insert_before_120_buckets"] = b.refund(redeemed, 100).gas_used

        # (r2) A refund after the redeemed points' month is over, into a member whose 120 dated
        # buckets expired behind a never-expiring one: a fresh month, swept in first.
        # (r2) A member for a campaign earn after the same 120 expiries (below).
        k = address_of(key("k"))
        b.full_ring(k)

        s_key = key("s")
        s = address_of(s_key)
        b.full_ring(s)
        late = b.redeem(s_key, 10).redemption_records()[0]

        # 121 months later every dated bucket of `a` has expired behind its never-expiring
        # tail: the next earn (a short policy again) sweeps 120 buckets before inserting.
        b.goto(start + MAX_POLICY + 2)
        b.policy(1)
        figures["earn_sweeping_120_buckets"] = b.earn(a, 1_000).gas_used
        # (r2) The same with a campaign bonus, the first its campaign issues (a fresh slot).
        figures["campaign_earn_sweeping_120_buckets"] = campaign_earn(b, k)
        figures["refund_sweeping_120_buckets"] = b.refund(late, 10).gas_used

        # Migration of 121 live buckets to a new address.
        h_key = key("h")
        h = address_of(h_key)
        b.full_ring(h)
        mm = MigrateMessage(h, address_of(key("h-new")), next(b.nonces), FAR)
        receipt = b.ledger.migrate(b.admin, mm, sign(b.ledger.domain, mm, h_key))
        figures["migration_121_buckets"] = int(receipt["gasUsed"])

        # The same sweeps for a redemption (120, then takes from the tail), an award (120, then
        # inserts) and expire().
        f_key = key("f")
        f = address_of(f_key)
        g = address_of(key("g"))
        w = address_of(key("w"))
        b.full_ring(f)
        b.full_ring(g)
        b.full_ring(w)
        b.goto(b.month() + MAX_POLICY + 2)
        figures["redemption_sweeping_120_buckets"] = b.redeem(f_key, 10).gas_used
        figures["expire_120_buckets"] = b.ledger.expire(b.admin, [g]).gas_used
        b.policy(1)
        n = next(b.nonces)
        am = AwardMessage(b.pid, w, 10, 2, keccak(text=f"award-{n}"), n, FAR)
        awarded = b.ledger.award_batch(b.admin, [SignedAward(am, sign(b.ledger.domain, am, b.partner_key))])
        assert not awarded.rejections(), awarded.rejections()
        figures["award_sweeping_120_buckets"] = awarded.gas_used
    finally:
        chain.close()

    width = max(len(k) for k in figures)
    for name, gas in figures.items():
        print(f"{name:<{width}}  {gas:>10,}")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(figures, out, indent=2)


if __name__ == "__main__":
    main()
