"""What the submitter reads from the chain, through the chain port (issue 11): receipts,
blocks, the head and the relayer's pending nonce, each a typed call in one place instead of
raw JSON-RPC method names spread over the submitter's modules."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from gateway.chain.backends import ChainBackend
from gateway.chain.jsonrpc import quantity


class ChainReads:
    def __init__(self, chain: ChainBackend) -> None:
        self.chain = chain

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

    def pending_nonce(self, address: str) -> int:
        """The account's next nonce, counting transactions in the node's pool."""
        return quantity(self.chain.request("eth_getTransactionCount", [address, "pending"]))
