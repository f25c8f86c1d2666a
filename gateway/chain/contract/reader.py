"""Reading a deployed ledger: calldata, every view (one by one or in one batch), decoded logs.

`Ledger` (gateway/chain/ledger.py) adds what writes: deployment, operator calls, batches.
"""

from __future__ import annotations

from typing import Any

from eth_abi import decode, encode
from eth_utils import to_checksum_address
from hexbytes import HexBytes
from web3 import Web3
from web3.contract import Contract
from web3.types import TxReceipt

from gateway.chain.contract.abi import _abi_tables, _plain, _static_tuple_array, artifact
from gateway.chain.contract.errors import rpc, rpc_many
from gateway.chain.contract.operations import LedgerEvent
from gateway.chain.jsonrpc import block_tag
from gateway.chain.jsonrpc import quantity as _int
from partners.signing import Domain, abi_word


class LedgerReader:
    """The reads of a deployed CoalitionPoints contract (and its calldata)."""

    def __init__(self, w3: Web3, address: str) -> None:
        self.w3 = w3
        self.address = to_checksum_address(address)
        self.contract: Contract = w3.eth.contract(address=self.address, abi=artifact()["abi"])
        self._fns, self._events = _abi_tables()
        self._address_lower = self.address.lower()
        self._chain_id: int | None = None
        self._domain: Domain | None = None

    @property
    def chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = int(self.w3.eth.chain_id)
        return self._chain_id

    @property
    def domain(self) -> Domain:
        # One instance per ledger: it caches its separator, which every signature hashes.
        if self._domain is None:
            self._domain = Domain(chain_id=self.chain_id, contract=self.address)
        return self._domain

    def encode_call(self, function: str, *args: Any) -> bytes:
        """Calldata of `function(args)`, straight through eth-abi (web3's contract layer is slow).

        A lone array of static tuples (earnBatch, redeemBatch: the submitter's every batch)
        is laid out word by word instead, ~10x faster; tests compare both encodings."""
        selector, inputs, _ = self._fns[function]
        fields = _static_tuple_array(inputs[0]) if len(inputs) == 1 == len(args) else None
        if fields is not None:
            rows = args[0]
            head = (32).to_bytes(32, "big") + len(rows).to_bytes(32, "big")
            return selector + head + b"".join(abi_word(t, v) for row in rows for t, v in zip(fields, row, strict=True))
        return selector + encode(inputs, args)

    # -------------------------------------------------------------- logs

    def decode_logs(self, receipt: TxReceipt) -> list[LedgerEvent]:
        return [ev for log in receipt["logs"] if (ev := self.decode_log(log)) is not None]

    def decode_log(self, log: Any, names: frozenset[str] | None = None) -> LedgerEvent | None:
        """The ledger's event in `log` (only those named in `names`, if given), else None.
        The general path, through eth-abi; `gateway.chain.events.EventDecoder` is the fast one."""
        if not log["topics"] or str(log["address"]).lower() != self._address_lower:
            return None
        spec = self._events.get(bytes(HexBytes(log["topics"][0])))
        if spec is None or (names is not None and spec[0] not in names):
            return None
        name, indexed, plain = spec
        args: dict[str, Any] = {}
        for (arg, typ), topic in zip(indexed, log["topics"][1:], strict=True):
            args[arg] = decode([typ], bytes(HexBytes(topic)))[0]
        values = decode([t for _, t in plain], bytes(HexBytes(log["data"])))
        args.update((arg, value) for (arg, _), value in zip(plain, values, strict=True))
        for arg, value in args.items():
            if isinstance(value, str) and value.startswith("0x") and len(value) == 42:
                args[arg] = to_checksum_address(value)
        return LedgerEvent(
            name, args, _int(log["blockNumber"]), HexBytes(log["transactionHash"]).to_0x_hex(), _int(log["logIndex"])
        )

    # -------------------------------------------------------------- views

    def _view(self, function: str, *args: Any, block: int | str = "latest") -> Any:
        call = {"to": self.address, "data": "0x" + self.encode_call(function, *args).hex()}
        return self._decode_view(function, rpc(self.w3, "eth_call", [call, block_tag(block)]))

    def _decode_view(self, function: str, result: Any) -> Any:
        values = _plain(decode(self._fns[function][2], bytes(HexBytes(result))))
        return values[0] if len(values) == 1 else values

    def views(self, calls: list[tuple[str, tuple[Any, ...]]], block: int | str = "latest") -> list[Any]:
        """Several views at one block in one JSON-RPC batch (one by one on eth-tester)."""
        tag = block_tag(block)
        requests = [
            ("eth_call", [{"to": self.address, "data": "0x" + self.encode_call(name, *args).hex()}, tag])
            for name, args in calls
        ]
        results = rpc_many(self.w3, requests)
        return [self._decode_view(name, result) for (name, _), result in zip(calls, results, strict=True)]

    def balance_of(self, member: str, block: int | str = "latest") -> int:
        return int(self._view("balanceOf", to_checksum_address(member), block=block))

    def total_supply(self, block: int | str = "latest") -> int:
        return int(self._view("totalSupply", block=block))

    def qualifying_points(self, member: str, block: int | str = "latest") -> int:
        return int(self._view("qualifyingPoints", to_checksum_address(member), block=block))

    def tier_of(self, member: str, block: int | str = "latest") -> int:
        return int(self._view("tierOf", to_checksum_address(member), block=block))

    def expiring_of(self, member: str, block: int | str = "latest") -> list[tuple[int, int]]:
        months, points = self._view("expiringOf", to_checksum_address(member), block=block)
        return list(zip(months, points, strict=True))

    def partner(self, partner_id: int, block: int | str = "latest") -> dict[str, Any]:
        info = self._view("partner", partner_id, block=block)
        keys = (
            "signer",
            "active",
            "rate_points",
            "rate_per_minor_units",
            "currency",
            "allowance",
            "issued",
            "reversed",
            "redeemed",
            "active_from",
            "awarded",
        )
        out = dict(zip(keys, info, strict=True))
        out["currency"] = bytes(out["currency"]).decode()
        return out

    def current_month(self, block: int | str = "latest") -> int:
        return int(self._view("currentMonth", block=block))

    def month_of(self, timestamp: int) -> int:
        return int(self._view("monthOf", timestamp))

    def partner_nonce_used(self, partner_id: int, nonce: int) -> bool:
        return bool(self._view("partnerNonceUsed", partner_id, nonce))

    def member_nonce_used(self, member: str, nonce: int) -> bool:
        return bool(self._view("memberNonceUsed", to_checksum_address(member), nonce))

    def view(self, function: str, *args: Any, block: int | str = "latest") -> Any:
        """Any other view by name (tiers, expiryMonths, pointValue, earnRoot...)."""
        return self._view(function, *args, block=block)

    def change(self, change_id: int, block: int | str = "latest") -> dict[str, Any]:
        kind, state, partner_id, effective_at, data = self._view("changeOf", change_id, block=block)
        states = {1: "pending", 2: "applied", 3: "cancelled"}
        return {
            "change_id": change_id,
            "kind": kind,
            "state": states.get(state, "unknown"),
            "partner_id": partner_id,
            "effective_at": effective_at,
            "data": bytes(data),
        }

    def partner_prices(self, partner_id: int, block: int | str = "latest") -> tuple[int, int]:
        """(issue price, redemption price) per point in force; 0 means the point value."""
        issue, redemption = self._view("partnerPrices", partner_id, block=block)
        return int(issue), int(redemption)

    def notice_period(self, block: int | str = "latest") -> int:
        return int(self._view("noticePeriod", block=block))

    def assigned_tier(self, member: str, block: int | str = "latest") -> tuple[int, int]:
        tier, until = self._view("assignedTier", to_checksum_address(member), block=block)
        return int(tier), int(until)

    def refunded(self, partner_id: int, block: int | str = "latest") -> int:
        """(r2) Points `partner_id` has refunded in all (kept out of `partner()`, whose tuple
        the gateway decodes)."""
        return int(self._view("refunded", partner_id, block=block))

    def refunded_of(self, leaf: bytes, block: int | str = "latest") -> int:
        """(r2) Points already refunded of the redemption with this leaf."""
        return int(self._view("refundedOf", leaf, block=block))

    def debt_of(self, member: str, block: int | str = "latest") -> int:
        """(r2) Points `member` owes: reversals' shortfalls not yet paid by later issuance."""
        return int(self._view("debtOf", to_checksum_address(member), block=block))

    def total_debt(self, block: int | str = "latest") -> int:
        """(r2) Points all members owe (never part of `totalSupply`)."""
        return int(self._view("totalDebt", block=block))

    def debt_allowed(self, block: int | str = "latest") -> bool:
        """(r2) The debt policy in force: True records a reversal's shortfall as debt."""
        return bool(self._view("debtAllowed", block=block))
