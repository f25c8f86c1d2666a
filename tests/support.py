"""A deployed ledger with partners and members, and short ways to sign and submit operations."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from itertools import count

from eth_utils import keccak

from gateway.chain.backends import AnvilNode, ChainBackend, EmbeddedChain
from gateway.chain.ledger import (
    BatchResult,
    EarnRecord,
    Ledger,
    RedemptionRecord,
    Sender,
    SignedEarn,
    SignedRedeem,
    SignedRefund,
    SignedReverse,
)
from gateway.core.config import CoalitionSettings, TierSettings
from gateway.points.rules import month_of, month_start
from partners.signing import (
    MAX_OP_POINTS,
    CampaignEarnMessage,
    Domain,
    EarnMessage,
    RedeemMessage,
    RefundMessage,
    ReverseMessage,
    address_of,
    sign,
)

FAR_DEADLINE = 2**40
DAY = 86_400

TEST_COALITION = CoalitionSettings(
    tiers=[
        TierSettings(name="Green", threshold=0, multiplier_bps=10_000),
        TierSettings(name="Silver", threshold=500, multiplier_bps=12_500),
        TierSettings(name="Gold", threshold=2_000, multiplier_bps=20_000),
    ],
    admin_delay_seconds=3 * DAY,
)


def make_chain(kind: str) -> ChainBackend:
    if kind == "embedded":
        return EmbeddedChain()
    return AnvilNode()


def anvil_required() -> bool:
    """In CI the anvil suite must run; elsewhere it may skip when npm was not run."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def key_for(label: str) -> str:
    """A deterministic private key per label, for partners and members that need no funds."""
    return "0x" + keccak(text=f"coalition-test-key:{label}").hex()


@dataclass
class World:
    chain: ChainBackend
    ledger: Ledger
    admin: Sender
    relayer: Sender
    partner_keys: dict[int, str] = field(default_factory=dict)
    _nonces: count[int] = field(default_factory=lambda: count(1))

    @classmethod
    def create(
        cls, chain: ChainBackend, *, partners: int = 3, allowance: int = 10**12, notice_period: int = 0
    ) -> World:
        admin = Sender(chain.w3, chain.dev_keys[0])
        relayer = Sender(chain.w3, chain.dev_keys[1])
        ledger = Ledger.deploy(admin, TEST_COALITION, notice_period=notice_period)
        world = cls(chain, ledger, admin, relayer)
        rates = [(1, 100), (3, 200), (5, 1)]  # 1 pt / EUR; 1.5 pt / EUR-equivalent; 5 pt / yen
        currencies = ["EUR", "GBP", "JPY"]
        for i in range(partners):
            key = key_for(f"partner-{i}")
            pid = ledger.add_partner(
                admin,
                signer=address_of(key),
                rate_points=rates[i % 3][0],
                rate_per_minor_units=rates[i % 3][1],
                currency=currencies[i % 3],
                allowance=allowance,
            )
            world.partner_keys[pid] = key
        return world

    # ------------------------------------------------------------ time

    def month(self) -> int:
        return month_of(self.chain.latest_timestamp())

    def goto_month(self, month: int, day: int = 15) -> None:
        """Moves the chain clock to the middle of `month` (never backwards)."""
        target = month_start(month) + (day - 1) * DAY + 12 * 3600
        assert target > self.chain.latest_timestamp(), "time only moves forward"
        self.chain.travel_to(target)

    def next_month(self, months: int = 1) -> None:
        self.goto_month(self.month() + months)

    # ------------------------------------------------------------ signed operations

    def nonce(self) -> int:
        return next(self._nonces)

    def earn_op(
        self,
        partner_id: int,
        member: str,
        spend: int,
        *,
        receipt: str | None = None,
        nonce: int | None = None,
        deadline: int = FAR_DEADLINE,
        key: str | None = None,
        domain: Domain | None = None,
        max_points: int = MAX_OP_POINTS,
        campaign_id: int = 0,
    ) -> SignedEarn:
        ref = keccak(text=receipt or f"earn-{self.nonce()}")
        nonce = self.nonce() if nonce is None else nonce
        message: EarnMessage | CampaignEarnMessage = (
            CampaignEarnMessage(partner_id, member, spend, campaign_id, ref, nonce, deadline, max_points)
            if campaign_id
            else EarnMessage(partner_id, member, spend, ref, nonce, deadline, max_points)
        )
        signer = key or self.partner_keys.get(partner_id) or key_for("nobody")
        return SignedEarn(message, sign(domain or self.ledger.domain, message, signer))

    def redeem_op(
        self,
        member_key: str,
        partner_id: int,
        points: int,
        *,
        nonce: int | None = None,
        deadline: int = FAR_DEADLINE,
        key: str | None = None,
        domain: Domain | None = None,
    ) -> SignedRedeem:
        message = RedeemMessage(
            address_of(member_key),
            partner_id,
            points,
            keccak(text=f"redeem-{self.nonce()}"),
            self.nonce() if nonce is None else nonce,
            deadline,
        )
        return SignedRedeem(message, sign(domain or self.ledger.domain, message, key or member_key))

    def reverse_op(
        self,
        record: EarnRecord,
        points: int,
        *,
        partner_id: int | None = None,
        nonce: int | None = None,
        deadline: int = FAR_DEADLINE,
        key: str | None = None,
    ) -> SignedReverse:
        pid = record.partner_id if partner_id is None else partner_id
        leaf_record = replace(record, partner_id=pid)
        message = ReverseMessage(
            pid,
            leaf_record.leaf(),
            points,
            keccak(text=f"refund-{self.nonce()}"),
            self.nonce() if nonce is None else nonce,
            deadline,
        )
        return SignedReverse(message, sign(self.ledger.domain, message, key or self.partner_keys[pid]), leaf_record)

    def refund_op(
        self,
        record: RedemptionRecord,
        points: int,
        *,
        partner_id: int | None = None,
        nonce: int | None = None,
        deadline: int = FAR_DEADLINE,
        key: str | None = None,
        domain: Domain | None = None,
    ) -> SignedRefund:
        """(r2) A refund of `points` of a redemption, signed by its partner's key (or `key`).
        With `partner_id`, the record is claimed for that partner (its leaf then names it)."""
        pid = record.partner_id if partner_id is None else partner_id
        claimed = RedemptionRecord(
            record.batch_id,
            record.index,
            pid,
            record.member,
            record.receipt_ref,
            record.points,
            record.expiry_month,
            record.proof,
        )
        message = RefundMessage(
            pid,
            claimed.leaf(),
            points,
            keccak(text=f"return-{self.nonce()}"),
            self.nonce() if nonce is None else nonce,
            deadline,
        )
        signer = key or self.partner_keys.get(pid) or key_for("nobody")
        return SignedRefund(message, sign(domain or self.ledger.domain, message, signer), claimed)

    def refund(self, *ops: SignedRefund) -> BatchResult:
        return self.ledger.refund_batch(self.relayer, list(ops))

    def earn(self, *ops: SignedEarn) -> BatchResult:
        return self.ledger.earn_batch(self.relayer, list(ops))

    def redeem(self, *ops: SignedRedeem) -> BatchResult:
        return self.ledger.redeem_batch(self.relayer, list(ops))

    def reverse(self, *ops: SignedReverse) -> BatchResult:
        return self.ledger.reverse_batch(self.relayer, list(ops))


def member(label: str) -> tuple[str, str]:
    """(private key, address) of a test member."""
    key = key_for(f"member-{label}")
    return key, address_of(key)
