"""Values as JSON-RPC carries them: quantities ("0x1a") and data ("0x..."), both ways.

The one copy of these helpers for the chain package (the ledger client, the event reader
and the revm node all read and write the same forms).
"""

from __future__ import annotations

from typing import Any


def quantity(value: Any) -> int:
    """A JSON-RPC quantity ("0x1a") or an int already decoded (eth-tester's answers) as an int."""
    return int(value, 16) if isinstance(value, str) else int(value)


def param_quantity(value: Any) -> int:
    """A quantity a client sent a node: lenient as nodes are (None is 0, "0x" hex or decimal)."""
    if value is None:
        return 0
    if isinstance(value, str):
        return int(value, 16) if value.startswith(("0x", "0X")) else int(value)
    return int(value)


def to_quantity(value: int) -> str:
    """An int as a JSON-RPC quantity."""
    return hex(value)


def to_data(value: bytes) -> str:
    """Bytes as JSON-RPC data ("0x" and lower-case hex)."""
    return "0x" + value.hex()


def data_bytes(value: Any) -> bytes:
    """JSON-RPC data (with or without "0x"), or bytes already, as bytes; None is empty."""
    if value is None:
        return b""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    text = str(value)
    return bytes.fromhex(text[2:] if text.startswith(("0x", "0X")) else text)


def block_tag(block: int | str) -> str:
    """A block number or tag ("latest") as a request's block parameter."""
    return hex(block) if isinstance(block, int) else block
