"""Values as JSON-RPC carries them."""

from __future__ import annotations

from typing import Any


def quantity(value: Any) -> int:
    """A JSON-RPC quantity ("0x1a") or an int already decoded (eth-tester's answers) as an int."""
    return int(value, 16) if isinstance(value, str) else int(value)
