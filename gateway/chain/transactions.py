"""Broadcasting a signed transaction, with the node's refusals as typed errors (the port's:
`gateway.chain.backends.errors`) instead of text to search by every caller."""

from __future__ import annotations

from web3 import Web3

from gateway.chain.backends import AlreadyKnown, NonceTooLow
from gateway.chain.ledger import rpc

__all__ = ["AlreadyKnown", "NonceTooLow", "send_raw"]


def send_raw(w3: Web3, raw: bytes) -> str:
    """Broadcasts a signed transaction; its hash. Raises AlreadyKnown or NonceTooLow for those
    refusals, ChainError for any other failure."""
    return str(rpc(w3, "eth_sendRawTransaction", ["0x" + raw.hex()]))
