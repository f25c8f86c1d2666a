"""API keys, private keys encrypted at rest, and member PINs.

- API keys are 256-bit random tokens; only their SHA-256 is stored (a slow KDF adds nothing
  for keys nobody can guess) and they are compared in constant time through that hash.
- Private keys (managed partners, custodial members, the gateway's own) are stored as
  standard Web3 Secret Storage (keystore v3) JSON under the key-encryption key, using
  eth-account's implementation rather than our own cipher code. The KEK is a high-entropy
  secret (checked at start-up outside development), so the keystore's PBKDF2 runs with a
  modest count: its cost would protect a weak password, and the KEK is not one.
- PINs are hashed with scrypt (2^14, r=8, p=1) and a per-member salt: a 4-6 digit PIN has
  little entropy, so the cost and the lockout after five failures are what protect it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass

from eth_account import Account
from eth_typing import HexStr

API_KEY_PREFIX = "lk_"
KEYSTORE_PBKDF2_ITERATIONS = 10_000
PIN_SCRYPT_N = 2**14


@dataclass(frozen=True)
class Caller:
    """The authenticated API key: who is asking, in which role, for which partner."""

    key_id: str
    role: str
    partner_id: int | None


def new_api_key() -> tuple[str, str, str]:
    """(key id, the key shown once, its hash to store)."""
    key_id = secrets.token_hex(8)
    key = f"{API_KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    return key_id, key, hash_api_key(key)


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_private_key() -> str:
    return "0x" + secrets.token_bytes(32).hex()


def encrypt_private_key(private_key: str, kek: str) -> str:
    keystore = Account.encrypt(HexStr(private_key), kek, kdf="pbkdf2", iterations=KEYSTORE_PBKDF2_ITERATIONS)
    return json.dumps(keystore)


def decrypt_private_key(encrypted: str, kek: str) -> str:
    return "0x" + bytes(Account.decrypt(json.loads(encrypted), kek)).hex()


def hash_pin(pin: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(pin.encode(), salt=salt, n=PIN_SCRYPT_N, r=8, p=1, maxmem=64 * 1024 * 1024)
    return f"scrypt${PIN_SCRYPT_N}${salt.hex()}${digest.hex()}"


def verify_pin(pin: str, stored: str) -> bool:
    scheme, n, salt, digest = stored.split("$")
    if scheme != "scrypt":
        return False
    candidate = hashlib.scrypt(pin.encode(), salt=bytes.fromhex(salt), n=int(n), r=8, p=1, maxmem=64 * 1024 * 1024)
    return hmac.compare_digest(candidate.hex(), digest)
