"""The `Loyalty-Signature` header: `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.

The HMAC key is the whole secret string as shown at creation (`whsec_...`), UTF-8. A receiver
checks the HMAC in constant time and refuses a `t` too far from its own clock (replays).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

HEADER = "Loyalty-Signature"
SECRET_PREFIX = "whsec_"
TOLERANCE_SECONDS = 300


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_hex(32)


def signature(secret: str, body: bytes, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(
    secret: str, header: str, body: bytes, *, now: int | None = None, tolerance: int = TOLERANCE_SECONDS
) -> bool:
    """What a receiver does (docs/partners.md shows the same in a few lines)."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        timestamp = int(fields["t"])
    except (ValueError, KeyError):
        return False
    if abs((int(time.time()) if now is None else now) - timestamp) > tolerance:
        return False
    expected = signature(secret, body, timestamp).split("v1=", 1)[1]
    return hmac.compare_digest(expected, fields.get("v1", ""))
