"""EIP-712 signatures of operations: made with a managed key, or checked when the caller signed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from eth_keys import keys
from eth_utils import to_checksum_address

from gateway.app.runtime import Runtime
from gateway.core.errors import ErrorCode, Invalid
from gateway.db.models import Partner
from partners.signing import (
    CompactSignature,
    Domain,
    Message,
    sign,
)

MANAGED_DEADLINE_SECONDS = 90 * 86_400  # a signature the gateway makes stays valid this long


@dataclass(frozen=True)
class SignedFields:
    signature: str
    nonce: int
    deadline: int


def now() -> datetime:
    return datetime.now(UTC)


def signing_time(runtime: Runtime) -> int:
    """What a deadline the gateway signs counts from: the contract checks deadlines against
    the chain's clock, which a development chain may have moved ahead of this machine's."""
    return max(int(now().timestamp()), runtime.chain_clock())


def verify_signature(domain: Domain, message: Message, signature: str, expected: str) -> CompactSignature:
    try:
        compact = CompactSignature.from_bytes(bytes.fromhex(signature.removeprefix("0x")))
        vs = int.from_bytes(compact.vs, "big")
        sig = keys.Signature(vrs=(vs >> 255, int.from_bytes(compact.r, "big"), vs & ((1 << 255) - 1)))
        recovered = sig.recover_public_key_from_msg_hash(domain.digest(message)).to_checksum_address()
    except Exception as exc:  # noqa: BLE001 - any malformed signature is the same client error
        raise Invalid("the signature could not be read", code=ErrorCode.INVALID_SIGNATURE) from exc
    if recovered != to_checksum_address(expected):
        raise Invalid(f"the signature is not from {expected}", code=ErrorCode.INVALID_SIGNATURE)
    return compact


def sign_for_partner(
    runtime: Runtime,
    partner: Partner,
    given: SignedFields | None,
    issued_at: str | None,
    message: Callable[[int, int], Message],
    reserved_nonce: int | None = None,
) -> tuple[int, int, str]:
    """(nonce, deadline, signature) of a partner's earn or reversal: made here with the
    partner's managed key, or checked here when the partner signed it itself."""
    if given is None:
        if not partner.managed or partner.encrypted_key is None:
            raise Invalid("this partner keeps its own key: send partner_signature", code=ErrorCode.SIGNATURE_REQUIRED)
        deadline = signing_time(runtime) + MANAGED_DEADLINE_SECONDS
        if reserved_nonce is not None:
            nonce = reserved_nonce
        else:  # taken in the caller's transaction, which holds the partner row
            nonce = partner.next_nonce
            partner.next_nonce += 1
        return (
            nonce,
            deadline,
            sign(runtime.ledger.domain, message(nonce, deadline), runtime.private_key(partner.encrypted_key)).hex(),
        )
    if issued_at is None:
        raise Invalid(
            "a signed operation names its issued_at: the signature covers the receipt", code=ErrorCode.VALIDATION_ERROR
        )
    signed = message(given.nonce, given.deadline)
    return (
        given.nonce,
        given.deadline,
        verify_signature(runtime.ledger.domain, signed, given.signature, partner.signer_address).hex(),
    )
