"""Broadcasting a signed transaction, with the node's refusals as typed errors instead of text
to search by every caller."""

from __future__ import annotations

from web3 import Web3

from gateway.chain.ledger import rpc
from gateway.core.errors import ChainError


class AlreadyKnown(ChainError):
    """The node has this very transaction already (in its pool, or mined)."""


class NonceTooLow(ChainError):
    """The sender's nonce has moved past this transaction's: it, or another with its nonce, is mined."""


# How nodes word these refusals (geth, anvil, Besu, Nethermind), lower-cased.
_ALREADY_KNOWN = ("already known", "known transaction")
_NONCE_TOO_LOW = ("nonce too low",)


def send_raw(w3: Web3, raw: bytes) -> str:
    """Broadcasts a signed transaction; its hash. Raises AlreadyKnown or NonceTooLow for those
    refusals, ChainError for any other failure."""
    try:
        return str(rpc(w3, "eth_sendRawTransaction", ["0x" + raw.hex()]))
    except ChainError as exc:
        message = str(exc).lower()
        if any(text in message for text in _ALREADY_KNOWN):
            raise AlreadyKnown(exc.message) from exc
        if any(text in message for text in _NONCE_TOO_LOW):
            raise NonceTooLow(exc.message) from exc
        raise
