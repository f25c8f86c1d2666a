"""How a chain refuses a request, as types: the port raises these, and callers never read
an error's text.

JSON-RPC gives an error a code, a message and sometimes data. Reverts are read from the code
(3, EIP-1474's "execution reverted") or from revert data where the node gives them. Other
refusals come from every node as the generic -32000 with only a message; the words nodes
use for them are matched here and nowhere else (`classify`), as is eth-tester's habit of
printing the revert data into its exception's text (`tester_revert_data`).
"""

from __future__ import annotations

import ast
import re
from typing import Any, NoReturn

from gateway.core.errors import ChainError, ChainFault, ErrorCode

REVERTED_CODE = 3  # EIP-1474: "execution reverted", with the revert data in `data`

# How nodes word refusals that carry no code of their own (geth, anvil, Besu, Nethermind,
# the revm node), lower-cased.
_ALREADY_KNOWN = ("already known", "known transaction")
_NONCE_TOO_LOW = ("nonce too low",)
# py-evm (through eth-tester) words every nonce refusal alike; the numbers say which it is.
_PYEVM_NONCE = re.compile(r"invalid transaction nonce: expected (\d+), but got (\d+)")
_NONCE = "nonce"  # any other nonce refusal: "nonce too high", a future py-evm nonce
_REVERT = "revert"  # nodes (and eth-tester) that give no code and no data still say it


class Reverted(ChainFault):
    """The EVM reverted the call or transaction; `data` is the revert data (None when the
    node gave none). The ledger client decodes it into `LedgerRevert`."""

    code = ErrorCode.LEDGER_REVERT

    def __init__(self, message: str, *, data: bytes | None = None, **details: Any) -> None:
        super().__init__(message, **details)
        self.data = data


class WrongNonce(ChainError):
    """The node refused a transaction for its nonce (too low, too high, or otherwise)."""


class NonceTooLow(WrongNonce):
    """The sender's nonce has moved past this transaction's: it, or another with its nonce, is mined."""


class AlreadyKnown(ChainError):
    """The node has this very transaction already (in its pool, or mined)."""


def revert_data(data: Any) -> bytes | None:
    """`data` as revert data (at least a 4-byte selector, as bytes or 0x-hex), else None."""
    if isinstance(data, (bytes, bytearray)):
        return bytes(data) if len(data) >= 4 else None
    if isinstance(data, str) and data.startswith("0x") and len(data) >= 10:
        try:
            return bytes.fromhex(data[2:])
        except ValueError:
            return None
    return None


def classify(method: str, message: str, *, code: Any = None, data: Any = None) -> ChainFault:
    """The typed error for a JSON-RPC error answer (or an in-process engine's exception
    turned into one): a revert, a nonce or duplicate refusal, or a `ChainError`."""
    if isinstance(data, dict):  # some nodes nest it: {"data": {"data": "0x..."}}
        data = data.get("data")
    raw = revert_data(data)
    text = message.lower()
    if raw is not None or code == REVERTED_CODE or _REVERT in text:
        return Reverted(f"{method} reverted: {message}", data=raw)
    failed = f"{method} failed: {message}"
    if any(words in text for words in _ALREADY_KNOWN):
        return AlreadyKnown(failed)
    if any(words in text for words in _NONCE_TOO_LOW):
        return NonceTooLow(failed)
    pyevm = _PYEVM_NONCE.search(text)
    if pyevm is not None and int(pyevm.group(2)) < int(pyevm.group(1)):
        return NonceTooLow(failed)
    if _NONCE in text:
        return WrongNonce(failed)
    return ChainError(failed)


def raise_for_error(method: str, error: Any) -> NoReturn:
    """Raises the typed error of a JSON-RPC answer's `error` member."""
    if isinstance(error, dict):
        raise classify(method, str(error.get("message", error)), code=error.get("code"), data=error.get("data"))
    raise classify(method, str(error))


def tester_revert_data(message: str) -> bytes | None:
    """eth-tester's TransactionFailed carries the revert data as a Python bytes literal in its text."""
    prefix = "execution reverted: "
    if message.startswith(prefix + "b'") or message.startswith(prefix + 'b"'):
        try:
            value = ast.literal_eval(message[len(prefix) :])
        except (ValueError, SyntaxError):
            return None
        return value if isinstance(value, bytes) else None
    return None
