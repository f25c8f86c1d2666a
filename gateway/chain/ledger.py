"""Typed client of the CoalitionPoints contract: deploy, operator calls, batches, views.

`Ledger` is the facade the gateway uses; its parts live in gateway/chain/contract/ (the ABI,
decoded errors, signed operations and their records, the reads) and transactions.py (the
sender). The names other packages import from here are re-exported, so `from
gateway.chain.ledger import X` keeps working for them.

Everything here speaks to the chain only; what the operations mean to the business lives in
the domain folders (operations/, submitter/, audit/). Reverts and batch rejections are
decoded from the contract's custom errors into `DecodedError(name, args)`, so callers never
see a hex blob.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from eth_abi import encode
from eth_utils import to_checksum_address
from hexbytes import HexBytes
from web3.types import TxReceipt

from gateway.chain.contract.abi import (
    AWARD_REASONS,
    KIND_AWARD,
    KIND_EARN,
    KIND_REDEEM,
    KIND_REFUND,
    KIND_REVERSE,
    MODULE,
    PROGRAMS_MODULE,
    _abi_tables,
    artifact,
)
from gateway.chain.contract.errors import DecodedError, LedgerRevert, decode_error, rpc, rpc_many
from gateway.chain.contract.operations import (
    BatchResult,
    EarnRecord,
    LedgerEvent,
    RedemptionRecord,
    SignedAward,
    SignedEarn,
    SignedRedeem,
    SignedRefund,
    SignedReverse,
    award_records,
    earn_records,
    redemption_records,
)
from gateway.chain.contract.reader import LedgerReader
from gateway.chain.transactions import Sender, wait_for_receipt
from gateway.core.config import CoalitionSettings
from gateway.core.errors import ChainError
from gateway.points.rules import NEVER  # the contract's "never expires" month
from partners.signing import CancelChangeMessage, CompactSignature, MigrateMessage, RotateSignerMessage

__all__ = [
    "AWARD_REASONS",
    "KIND_AWARD",
    "KIND_EARN",
    "KIND_REDEEM",
    "KIND_REFUND",
    "KIND_REVERSE",
    "MODULE",
    "NEVER",
    "PROGRAMS_MODULE",
    "BatchResult",
    "DecodedError",
    "EarnRecord",
    "Ledger",
    "LedgerEvent",
    "LedgerReader",
    "LedgerRevert",
    "RedemptionRecord",
    "Sender",
    "SignedAward",
    "SignedEarn",
    "SignedRedeem",
    "SignedRefund",
    "SignedReverse",
    "_abi_tables",
    "artifact",
    "award_records",
    "decode_error",
    "earn_records",
    "load_deployment",
    "redemption_records",
    "rpc",
    "rpc_many",
    "wait_for_receipt",
]


class Ledger(LedgerReader):
    """A deployed CoalitionPoints contract: its reads (`LedgerReader`) and what writes."""

    @classmethod
    def deploy(
        cls,
        sender: Sender,
        coalition: CoalitionSettings,
        *,
        admin: str | None = None,
        notice_period: int | None = None,
    ) -> Ledger:
        """Deploys the operator module and the ledger, and applies the coalition policy from
        the settings (at once: before the first partner nothing is a change under notice).

        `notice_period` (seconds) defaults to the settings' `notice_period_seconds`, or 0 when
        they have none; the contract refuses less than 7 days outside development chains."""
        if notice_period is None:
            notice_period = int(getattr(coalition, "notice_period_seconds", 0))
        programs = sender.send(None, HexBytes(artifact(PROGRAMS_MODULE)["bytecode"]))["contractAddress"]
        if programs is None:
            raise ChainError("deploying the ledger's programme module created no contract")
        module_args = encode(["address"], [to_checksum_address(programs)])
        module = sender.send(None, HexBytes(artifact(MODULE)["bytecode"]) + module_args)["contractAddress"]
        if module is None:
            raise ChainError("deploying the ledger's operator module created no contract")
        args = encode(
            ["string", "string", "address", "uint48", "uint64", "address"],
            [
                coalition.name,
                coalition.symbol,
                admin or sender.address,
                coalition.admin_delay_seconds,
                notice_period,
                to_checksum_address(module),
            ],
        )
        receipt = sender.send(None, HexBytes(artifact()["bytecode"]) + args)
        if receipt["contractAddress"] is None:
            raise ChainError("deployment transaction created no contract")
        ledger = cls(sender.w3, receipt["contractAddress"])
        ledger.deployment_block = int(receipt["blockNumber"])
        ledger.deployment_tx = HexBytes(receipt["transactionHash"]).to_0x_hex()
        if admin is None or admin == sender.address:
            ledger.apply_policy(sender, coalition)
        return ledger

    deployment_block: int = 0
    deployment_tx: str = ""

    def apply_policy(self, sender: Sender, coalition: CoalitionSettings) -> None:
        self.call(sender, "setTiers", [(t.threshold, t.multiplier_bps) for t in coalition.tiers])
        if coalition.expiry_months != 12:
            self.call(sender, "setExpiryMonths", coalition.expiry_months)
        if coalition.transfers_enabled:
            self.call(sender, "setTransfersEnabled", True)
        self.call(sender, "setPointValue", coalition.point_value_minor_units, coalition.point_value_currency.encode())

    def add_partner(
        self, sender: Sender, *, signer: str, rate_points: int, rate_per_minor_units: int, currency: str, allowance: int
    ) -> int:
        receipt = self.call(
            sender,
            "addPartner",
            to_checksum_address(signer),
            rate_points,
            rate_per_minor_units,
            currency.encode(),
            allowance,
        )
        added = [e for e in self.decode_logs(receipt) if e.name == "PartnerAdded"]
        return int(added[0].args["partnerId"])

    def schedule(self, sender: Sender, function: str, *args: Any) -> int:
        """Calls an operator function that schedules a change (setTiers, setExpiryMonths,
        setPointValue, setPartnerRate, setPartnerPrices, requestSignerChange); returns the
        change id. The change
        applied at once if `ChangeApplied` is in the same receipt (no notice period)."""
        receipt = self.call(sender, function, *args)
        scheduled = [e for e in self.decode_logs(receipt) if e.name == "ChangeScheduled"]
        return int(scheduled[0].args["changeId"])

    def apply_change(self, sender: Sender, change_id: int) -> TxReceipt:
        """Applies a scheduled change whose notice period is over (anyone may)."""
        return self.call(sender, "applyChange", change_id)

    def rotate_signer(self, sender: Sender, message: RotateSignerMessage, signature: CompactSignature) -> TxReceipt:
        """Replaces a partner's signer with the current signer's signature (anyone submits)."""
        m = message
        return self.call(
            sender,
            "rotateSigner",
            m.partner_id,
            to_checksum_address(m.new_signer),
            m.nonce,
            m.deadline,
            signature.r,
            signature.vs,
        )

    def cancel_signer_change(
        self, sender: Sender, message: CancelChangeMessage, signature: CompactSignature
    ) -> TxReceipt:
        """Withdraws an operator's scheduled signer change with the partner's current key."""
        return self.call(sender, "cancelSignerChange", message.change_id, signature.r, signature.vs)

    def call(self, sender: Sender, function: str, *args: Any, gas: int | None = None) -> TxReceipt:
        """Sends any operator function by name (setPartnerActive, pause, setTiers...)."""
        return sender.send(self.address, self.encode_call(function, *args), gas=gas)

    def earn_batch(self, sender: Sender, ops: list[SignedEarn], *, gas: int | None = None) -> BatchResult:
        receipt = sender.send(self.address, self.encode_call("earnBatch", [op.as_tuple() for op in ops]), gas=gas)
        block = self.w3.eth.get_block(receipt["blockNumber"])
        return BatchResult(receipt, self.decode_logs(receipt), self.month_of(int(block["timestamp"])))

    def award_batch(self, sender: Sender, ops: list[SignedAward], *, gas: int | None = None) -> BatchResult:
        """Awards (r2): points without a purchase, for a reason code; reversible like earns."""
        receipt = sender.send(self.address, self.encode_call("awardBatch", [op.as_tuple() for op in ops]), gas=gas)
        block = self.w3.eth.get_block(receipt["blockNumber"])
        return BatchResult(receipt, self.decode_logs(receipt), self.month_of(int(block["timestamp"])))

    def assign_tier(self, sender: Sender, member: str, tier: int, until: int) -> TxReceipt:
        """Gives `member` at least tier `tier` until the timestamp `until` (0 withdraws it)."""
        return self.call(sender, "assignTier", to_checksum_address(member), tier, until)

    def migrate(self, sender: Sender, message: MigrateMessage, signature: CompactSignature) -> TxReceipt:
        """Moves a member's points, expiry months, tier history and assigned tier to a new
        address, with the member's signature (r2; works while transfers are off)."""
        m = message
        return self.call(
            sender,
            "migrate",
            to_checksum_address(m.from_member),
            to_checksum_address(m.to),
            m.nonce,
            m.deadline,
            signature.r,
            signature.vs,
        )

    def redeem_batch(self, sender: Sender, ops: list[SignedRedeem], *, gas: int | None = None) -> BatchResult:
        receipt = sender.send(self.address, self.encode_call("redeemBatch", [op.as_tuple() for op in ops]), gas=gas)
        return BatchResult(receipt, self.decode_logs(receipt))

    def reverse_batch(self, sender: Sender, ops: list[SignedReverse], *, gas: int | None = None) -> BatchResult:
        receipt = sender.send(self.address, self.encode_call("reverseBatch", [op.as_tuple() for op in ops]), gas=gas)
        return BatchResult(receipt, self.decode_logs(receipt))

    def refund_batch(self, sender: Sender, ops: list[SignedRefund], *, gas: int | None = None) -> BatchResult:
        """(r2) Refunds of redemptions, each signed by the partner the points were redeemed at."""
        receipt = sender.send(self.address, self.encode_call("refundBatch", [op.as_tuple() for op in ops]), gas=gas)
        return BatchResult(receipt, self.decode_logs(receipt))

    def expire(self, sender: Sender, members: list[str]) -> BatchResult:
        receipt = self.call(sender, "expire", [to_checksum_address(m) for m in members])
        return BatchResult(receipt, self.decode_logs(receipt))

    def deployment_record(self, *, network: str) -> dict[str, Any]:
        return {
            "network": network,
            "chain_id": self.chain_id,
            "address": self.address,
            "deployment_block": self.deployment_block,
            "deployment_tx": self.deployment_tx,
            "compiler": artifact()["compiler"]["version"],
            "sources_hash": artifact()["sourcesHash"],
            "abi": artifact()["abi"],
        }


def load_deployment(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data
