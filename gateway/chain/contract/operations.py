"""What the ledger's batches carry and return: signed operations, the committed records a
reversal or a refund proves against its batch's Merkle root, decoded events, batch results."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from eth_utils import to_checksum_address
from web3.types import TxReceipt

from gateway.chain.contract.errors import DecodedError, decode_error
from gateway.chain.merkle import merkle_proofs
from partners.signing import (
    AwardMessage,
    CampaignEarnMessage,
    CompactSignature,
    EarnMessage,
    RedeemMessage,
    RefundMessage,
    ReverseMessage,
    earn_leaf,
    redemption_leaf,
)


@dataclass(frozen=True)
class LedgerEvent:
    """One decoded log of the ledger."""

    name: str
    args: dict[str, Any]
    block_number: int
    tx_hash: str
    log_index: int


@dataclass(frozen=True)
class SignedEarn:
    """An earn as the ledger takes it; (r2) a `CampaignEarnMessage` names a campaign, an
    `EarnMessage` none (campaign id 0 on-chain)."""

    message: EarnMessage | CampaignEarnMessage
    signature: CompactSignature

    def as_tuple(self) -> tuple[Any, ...]:
        m = self.message
        return (
            m.partner_id,
            to_checksum_address(m.member),
            m.spend,
            m.max_points,
            m.campaign_id if isinstance(m, CampaignEarnMessage) else 0,
            m.receipt_ref,
            m.nonce,
            m.deadline,
            self.signature.r,
            self.signature.vs,
        )


@dataclass(frozen=True)
class SignedRedeem:
    message: RedeemMessage
    signature: CompactSignature

    def as_tuple(self) -> tuple[Any, ...]:
        m = self.message
        return (
            to_checksum_address(m.member),
            m.partner_id,
            m.points,
            m.receipt_ref,
            m.nonce,
            m.deadline,
            self.signature.r,
            self.signature.vs,
        )


@dataclass(frozen=True)
class EarnRecord:
    """An earn as committed on-chain: what a reversal proves against its batch root."""

    batch_id: int
    partner_id: int
    member: str
    receipt_ref: bytes
    spend: int
    points: int
    earn_month: int
    proof: list[bytes] = field(default_factory=list)
    bonus: int = 0  # (r2) the campaign bonus included in `points`

    def leaf(self) -> bytes:
        return earn_leaf(
            partner_id=self.partner_id,
            member=self.member,
            receipt_ref=self.receipt_ref,
            spend=self.spend,
            points=self.points,
            earn_month=self.earn_month,
            bonus=self.bonus,
        )


def earn_records(batch_id: int, earn_month: int, earned: list[LedgerEvent]) -> list[EarnRecord]:
    """One earn batch's records from its `Earned` events (in log order), each with its proof
    against the batch's Merkle root: what a reversal later proves its earn with."""
    drafts = [
        EarnRecord(
            batch_id,
            e.args["partnerId"],
            e.args["member"],
            bytes(e.args["receiptRef"]),
            int(e.args.get("spend", 0)),  # an award's leaf has spend 0
            int(e.args["points"]),
            earn_month,
            bonus=int(e.args.get("bonus", 0)),  # (r2) an award has none
        )
        for e in earned
    ]
    proofs = merkle_proofs([d.leaf() for d in drafts])
    return [replace(d, proof=proof) for d, proof in zip(drafts, proofs, strict=True)]


@dataclass(frozen=True)
class SignedAward:
    message: AwardMessage
    signature: CompactSignature

    def as_tuple(self) -> tuple[Any, ...]:
        m = self.message
        return (
            m.partner_id,
            to_checksum_address(m.member),
            m.points,
            m.reason,
            m.receipt_ref,
            m.nonce,
            m.deadline,
            self.signature.r,
            self.signature.vs,
        )


def award_records(batch_id: int, award_month: int, awarded: list[LedgerEvent]) -> list[EarnRecord]:
    """One award batch's records from its `Awarded` events (in log order), with proofs: an
    award is committed like an earn with spend 0, and reversed the same way."""
    return earn_records(batch_id, award_month, awarded)


@dataclass(frozen=True)
class SignedReverse:
    message: ReverseMessage
    signature: CompactSignature
    earn: EarnRecord

    def as_tuple(self) -> tuple[Any, ...]:
        m, e = self.message, self.earn
        return (
            m.partner_id,
            m.points,
            m.receipt_ref,
            m.nonce,
            m.deadline,
            self.signature.r,
            self.signature.vs,
            (
                e.batch_id,
                to_checksum_address(e.member),
                e.receipt_ref,
                e.spend,
                e.points,
                e.earn_month,
                list(e.proof),
                e.bonus,
            ),
        )


@dataclass(frozen=True)
class RedemptionRecord:
    """(r2) A redemption as committed on-chain: what a refund proves against its batch root.
    `expiry_month` is the latest expiry month among the points it burnt; `index` its place
    among its batch's accepted redemptions."""

    batch_id: int
    index: int
    partner_id: int
    member: str
    receipt_ref: bytes
    points: int
    expiry_month: int
    proof: list[bytes] = field(default_factory=list)

    def leaf(self) -> bytes:
        return redemption_leaf(
            partner_id=self.partner_id,
            member=self.member,
            receipt_ref=self.receipt_ref,
            points=self.points,
            expiry_month=self.expiry_month,
            batch_id=self.batch_id,
            index=self.index,
        )

    def as_tuple(self) -> tuple[Any, ...]:
        return (
            self.batch_id,
            self.index,
            to_checksum_address(self.member),
            self.receipt_ref,
            self.points,
            self.expiry_month,
            list(self.proof),
        )


def redemption_records(batch_id: int, expiry_months: list[int], redeemed: list[LedgerEvent]) -> list[RedemptionRecord]:
    """One redemption batch's records from its `Redeemed` events (in log order) and the
    expiry months of its `RedeemBatchCommitted` event, each with its proof against the
    batch's Merkle root: what a refund later proves its redemption with."""
    drafts = [
        RedemptionRecord(
            batch_id,
            i,
            e.args["partnerId"],
            e.args["member"],
            bytes(e.args["receiptRef"]),
            int(e.args["points"]),
            int(expiry),
        )
        for i, (e, expiry) in enumerate(zip(redeemed, expiry_months, strict=True))
    ]
    proofs = merkle_proofs([d.leaf() for d in drafts])
    return [replace(d, proof=proof) for d, proof in zip(drafts, proofs, strict=True)]


@dataclass(frozen=True)
class SignedRefund:
    """(r2) A refund of a redemption, signed by the partner the points were redeemed at."""

    message: RefundMessage
    signature: CompactSignature
    redemption: RedemptionRecord

    def as_tuple(self) -> tuple[Any, ...]:
        m = self.message
        return (
            m.partner_id,
            m.points,
            m.receipt_ref,
            m.nonce,
            m.deadline,
            self.signature.r,
            self.signature.vs,
            self.redemption.as_tuple(),
        )


@dataclass
class BatchResult:
    receipt: TxReceipt
    events: list[LedgerEvent]
    earn_month: int = 0  # month of the block, for the leaves of an earn batch

    @property
    def gas_used(self) -> int:
        return int(self.receipt["gasUsed"])

    def named(self, name: str) -> list[LedgerEvent]:
        return [e for e in self.events if e.name == name]

    def rejections(self) -> list[tuple[int, DecodedError]]:
        """(index in the batch, decoded reason) of every skipped operation."""
        return [(e.args["index"], decode_error(e.args["reason"])) for e in self.named("OperationRejected")]

    def earn_records(self) -> list[EarnRecord]:
        """The accepted earns of an earn batch (or awards of an award batch), each with its
        proof against the batch root."""
        earned = self.named("Earned")
        if earned:
            return earn_records(int(self.named("EarnBatchCommitted")[0].args["batchId"]), self.earn_month, earned)
        awarded = self.named("Awarded")
        if awarded:
            return award_records(int(self.named("EarnBatchCommitted")[0].args["batchId"]), self.earn_month, awarded)
        return []

    def redemption_records(self) -> list[RedemptionRecord]:
        """(r2) The accepted redemptions of a redemption batch, each with its proof against
        the batch root: what a refund proves its redemption with."""
        committed = self.named("RedeemBatchCommitted")
        if not committed:
            return []
        args = committed[0].args
        return redemption_records(int(args["batchId"]), list(args["expiryMonths"]), self.named("Redeemed"))
