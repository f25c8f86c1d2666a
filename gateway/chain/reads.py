"""Typed reads of the chain through its port (issue 11): receipts, blocks, the head, the
chain id and an account's pending nonce, each in one place instead of raw JSON-RPC method names
spread over the submitter, the audit, the console and the CLI."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from web3 import Web3

from gateway.chain.backends import ChainBackend, chain_of
from gateway.chain.jsonrpc import quantity


class ChainReads:
    def __init__(self, chain: ChainBackend) -> None:
        self.chain = chain

    @classmethod
    def of(cls, w3: Web3) -> ChainReads:
        """For code that holds only a `Web3` (the audit functions)."""
        return cls(chain_of(w3))

    def receipt(self, tx_hash: str) -> Any:
        """The transaction's receipt, or None while it is not mined."""
        return self.chain.request("eth_getTransactionReceipt", [tx_hash])

    def knows(self, tx_hash: str) -> bool:
        """Whether the node has the transaction (in its pool or mined)."""
        return self.chain.request("eth_getTransactionByHash", [tx_hash]) is not None

    def block(self, number: int | str) -> Any:
        """A block's header (number, hash, parentHash, timestamp...), or None."""
        tag = hex(number) if isinstance(number, int) else number
        return self.chain.request("eth_getBlockByNumber", [tag, False])

    def blocks(self, numbers: Iterable[int]) -> list[Any]:
        """Several blocks' headers in one round trip where the chain allows."""
        return self.chain.batch_request([("eth_getBlockByNumber", [hex(n), False]) for n in numbers])

    def head(self) -> int:
        return quantity(self.chain.request("eth_blockNumber", []))

    def latest(self) -> tuple[int, int]:
        """(number, timestamp) of the latest block."""
        block = self.block("latest")
        return quantity(block["number"]), quantity(block["timestamp"])

    def chain_id(self) -> int:
        return quantity(self.chain.request("eth_chainId", []))

    def pending_nonce(self, address: str) -> int:
        """The account's next nonce, counting transactions in the node's pool."""
        return quantity(self.chain.request("eth_getTransactionCount", [address, "pending"]))
