"""Sending transactions: `Sender` signs from one local key and keeps its own nonce count;
`send_raw` broadcasts a signed transaction, with the node's refusals typed by the port
(`AlreadyKnown`, `NonceTooLow`: gateway/chain/backends/errors.py) instead of text to search
by every caller."""

from __future__ import annotations

import time
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address
from hexbytes import HexBytes
from web3 import Web3
from web3.types import TxReceipt

from gateway.chain.backends import AlreadyKnown, NonceTooLow, WrongNonce
from gateway.chain.contract.errors import rpc
from gateway.chain.jsonrpc import quantity as _int
from gateway.core.errors import ChainError

__all__ = ["AlreadyKnown", "NonceTooLow", "Sender", "send_raw", "wait_for_receipt"]


class Sender:
    """Signs and sends transactions from one local key, keeping its own nonce count."""

    def __init__(self, w3: Web3, private_key: str, *, priority_fee: int = 10**9) -> None:
        self.w3 = w3
        self.priority_fee = priority_fee  # wei per gas for the block producer (1 gwei by default)
        self.account: LocalAccount = Account.from_key(private_key)
        self.address = self.account.address
        self._nonce: int | None = None
        self._chain_id: int | None = None
        self._base_fee: tuple[float, int] | None = None  # (when read, value)

    def _rpc(self, method: str, params: list[Any]) -> Any:
        return rpc(self.w3, method, params)

    def sign(
        self, to: str | None, data: bytes, *, gas: int | None = None, nonce: int | None = None
    ) -> tuple[bytes, int]:
        """Builds and signs a transaction; returns (raw bytes, nonce). Estimates gas if not given."""
        if self._chain_id is None:
            self._chain_id = _int(self._rpc("eth_chainId", []))
        if nonce is None:
            if self._nonce is None:
                self._nonce = _int(self._rpc("eth_getTransactionCount", [self.address, "pending"]))
            nonce = self._nonce
        base_fee = self.base_fee()
        tx: dict[str, Any] = {
            "from": self.address,
            "data": "0x" + data.hex(),
            "nonce": nonce,
            "chainId": self._chain_id,
            "maxPriorityFeePerGas": self.priority_fee,
            "maxFeePerGas": 2 * base_fee + self.priority_fee,
            "value": 0,
        }
        if to is not None:
            tx["to"] = to_checksum_address(to)
        if gas is None:
            probe = {k: (hex(v) if isinstance(v, int) else v) for k, v in tx.items() if k != "chainId"}
            gas = int(_int(self._rpc("eth_estimateGas", [probe])) * 1.2)
        tx["gas"] = gas
        signed = self.account.sign_transaction(tx)
        return bytes(signed.raw_transaction), nonce

    def base_fee(self, max_age: float = 2.0) -> int:
        """The latest base fee, re-read at most every `max_age` seconds (the cap is 2x it)."""
        now = time.monotonic()
        if self._base_fee is None or now - self._base_fee[0] > max_age:
            block = self._rpc("eth_getBlockByNumber", ["latest", False])
            self._base_fee = (now, _int(block["baseFeePerGas"]))
        return self._base_fee[1]

    def send(self, to: str | None, data: bytes, *, gas: int | None = None) -> TxReceipt:
        """Sends a transaction, waits for its receipt, raises on revert (decoded)."""
        for attempt in (1, 2):
            raw, nonce = self.sign(to, data, gas=gas)
            try:
                tx_hash = self._rpc("eth_sendRawTransaction", ["0x" + raw.hex()])
                break
            except WrongNonce:
                if attempt == 2:
                    raise
                # Another process (or someone by hand) used this key since we counted:
                # count again from the chain and sign once more.
                self._nonce = None
        self._nonce = nonce + 1
        receipt = wait_for_receipt(self.w3, tx_hash)
        if receipt["status"] != 1:
            self._explain_revert(to, data, int(receipt["blockNumber"]))
            raise ChainError(f"transaction {tx_hash} reverted", tx_hash=tx_hash)
        return receipt

    def _explain_revert(self, to: str | None, data: bytes, block: int) -> None:
        """Replays a reverted transaction as a call on its parent block to get the reason."""
        call = {"from": self.address, "data": "0x" + data.hex(), **({"to": to} if to else {})}
        self._rpc("eth_call", [call, hex(block - 1)])  # raises LedgerRevert with the decoded error


def wait_for_receipt(w3: Web3, tx_hash: str | bytes, timeout: float = 120.0) -> TxReceipt:
    """Polls for a receipt; block number, status and gas come back as ints."""
    tx_hex = tx_hash if isinstance(tx_hash, str) else HexBytes(tx_hash).to_0x_hex()
    deadline = time.monotonic() + timeout
    delay = 0.002
    while True:
        receipt = rpc(w3, "eth_getTransactionReceipt", [tx_hex])
        if receipt:
            out = dict(receipt)
            for key in ("blockNumber", "status", "gasUsed", "transactionIndex"):
                out[key] = _int(out[key])
            out["transactionHash"] = HexBytes(out["transactionHash"])
            if out.get("contractAddress"):
                out["contractAddress"] = to_checksum_address(out["contractAddress"])
            return out  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise ChainError(f"no receipt for {tx_hex} after {timeout:.0f} s")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def send_raw(w3: Web3, raw: bytes) -> str:
    """Broadcasts a signed transaction; its hash. Raises AlreadyKnown or NonceTooLow for those
    refusals, ChainError for any other failure."""
    return str(rpc(w3, "eth_sendRawTransaction", ["0x" + raw.hex()]))
