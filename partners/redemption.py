"""A self-custody member's authorization of a redemption: what the till asks for, what the wallet signs.

The till builds a `RedemptionRequest` (usually with `client.redemption_request(...)`), shows
it to the member (e.g. as a QR code of `typed_data()`), and the member's wallet signs it with
`eth_signTypedData_v4`, or with `sign_redemption()` when the key is in Python. The resulting
`MemberAuthorization` goes to `client.redeem(..., authorization=...)`. The signature covers
the canonical receipt of the redemption, so the till must send the same `issued_at`: the
authorization carries it.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from eth_keys import keys
from eth_utils import to_checksum_address

from partners.signing import CompactSignature, Domain, Receipt, RedeemMessage, new_receipt_salt, sign

MEMBER_AUTHORIZATION_SECONDS = 86_400
# JavaScript wallets read JSON numbers as doubles: a nonce above 2**53 would reach them changed.
_MEMBER_NONCE_BOUND = 2**53


def utc_now_iso() -> str:
    """The time a receipt is issued, as the gateway writes it (ISO 8601, UTC, microseconds)."""
    return datetime.now(UTC).isoformat()


def random_member_nonce() -> int:
    """A fresh nonce for a member's redemption; the ledger keeps a bitmap of used ones per member."""
    return secrets.randbelow(_MEMBER_NONCE_BOUND)


def recover_signer(domain: Domain, message: RedeemMessage, signature: str | bytes) -> str:
    """The address that signed `message` (65-byte wallet signature or 64-byte compact one)."""
    raw = bytes.fromhex(signature.removeprefix("0x")) if isinstance(signature, str) else signature
    compact = CompactSignature.from_bytes(raw)
    vs = int.from_bytes(compact.vs, "big")
    sig = keys.Signature(vrs=(vs >> 255, int.from_bytes(compact.r, "big"), vs & ((1 << 255) - 1)))
    return str(sig.recover_public_key_from_msg_hash(domain.digest(message)).to_checksum_address())


@dataclass(frozen=True)
class MemberAuthorization:
    """A member's signature over one redemption, with everything the till must send along."""

    member_id: str
    partner_id: int
    receipt_id: str
    points: int
    issued_at: str
    nonce: int
    deadline: int
    signature: str  # 0x-hex, 64-byte compact (EIP-2098) or 65-byte
    salt: str = ""  # the receipt's salt the signature covers (sent as receipt_salt)

    def as_json(self) -> dict[str, Any]:
        """The `authorization` object of POST /v1/redemptions."""
        return {"signature": self.signature, "nonce": self.nonce, "deadline": self.deadline}


@dataclass(frozen=True)
class RedemptionRequest:
    """One redemption a till asks a self-custody member to authorize."""

    domain: Domain
    partner_id: int
    member_id: str
    member_address: str
    receipt_id: str
    points: int
    issued_at: str
    nonce: int
    deadline: int
    salt: str = ""  # the receipt document's salt (create() draws one)

    @classmethod
    def create(
        cls,
        *,
        domain: Domain,
        partner_id: int,
        member_id: str,
        member_address: str,
        receipt_id: str,
        points: int,
        issued_at: str | None = None,
        nonce: int | None = None,
        deadline: int | None = None,
        valid_for: int = MEMBER_AUTHORIZATION_SECONDS,
    ) -> RedemptionRequest:
        return cls(
            domain=domain,
            partner_id=partner_id,
            member_id=member_id,
            member_address=to_checksum_address(member_address),
            receipt_id=receipt_id,
            points=points,
            issued_at=issued_at or utc_now_iso(),
            nonce=random_member_nonce() if nonce is None else nonce,
            deadline=int(time.time()) + valid_for if deadline is None else deadline,
            salt=new_receipt_salt(),
        )

    def receipt(self) -> Receipt:
        """The canonical receipt the gateway will store; the signature covers its hash."""
        return Receipt(
            kind="redemption",
            partner_id=self.partner_id,
            receipt_id=self.receipt_id,
            member_id=self.member_id,
            points=self.points,
            issued_at=self.issued_at,
            salt=self.salt,
        )

    def message(self) -> RedeemMessage:
        return RedeemMessage(
            self.member_address, self.partner_id, self.points, self.receipt().ref(), self.nonce, self.deadline
        )

    def typed_data(self) -> dict[str, Any]:
        """The EIP-712 JSON a wallet signs with `eth_signTypedData_v4`."""
        return self.message().typed_data(self.domain)

    def authorize(self, signature: str | bytes) -> MemberAuthorization:
        """The authorization from a wallet's signature, checked here to be the member's.

        Raises ValueError when the signature is malformed or someone else's: better refused
        at the till than by the gateway with the customer gone.
        """
        try:
            signer = recover_signer(self.domain, self.message(), signature)
        except Exception as exc:  # noqa: BLE001 - every malformed signature is the same mistake
            raise ValueError(f"the signature could not be read: {exc}") from exc
        if signer != self.member_address:
            raise ValueError(f"the signature is from {signer}, not from the member's {self.member_address}")
        raw = bytes.fromhex(signature.removeprefix("0x")) if isinstance(signature, str) else signature
        return MemberAuthorization(
            member_id=self.member_id,
            partner_id=self.partner_id,
            receipt_id=self.receipt_id,
            points=self.points,
            issued_at=self.issued_at,
            nonce=self.nonce,
            deadline=self.deadline,
            signature=CompactSignature.from_bytes(raw).hex(),
            salt=self.salt,
        )


def sign_redemption(request: RedemptionRequest, private_key: bytes | str) -> MemberAuthorization:
    """Signs `request` with the member's own key, as a wallet would."""
    return request.authorize(sign(request.domain, request.message(), private_key).hex())
