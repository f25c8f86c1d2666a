"""EIP-712 messages of the ledger (Earn, CampaignEarn, Campaign, Redeem, Reverse, Award, Refund,
Migrate, RotateSigner, CancelChange) and their compact signatures.

The hashing is written out with eth-abi rather than through eth-account's typed-data
encoder because it runs hundreds of times a second in the gateway; `typed_data()` gives
the same message as EIP-712 JSON for wallets, and the tests check both agree.

Longer than 400 lines: every message the ledger verifies, with the leaves and the receipt
document whose hashes they carry, in one place, so that a partner's or a wallet's signer and
the contract's type strings can be compared side by side.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from functools import cache, cached_property, lru_cache
from typing import Any, ClassVar

import coincurve
from eth_abi import encode
from eth_keys import keys
from eth_utils import keccak, to_checksum_address
from sha3 import keccak_256  # safe-pysha3, what eth-hash itself uses here


# Straight to the C hash: eth_utils.keccak's argument checks cost more than hashing these few
# words, and a gateway hashes three documents per operation (issue 13's batch intake).
def keccak256(data: bytes) -> bytes:
    return keccak_256(data).digest()


DOMAIN_NAME = "Coalition Points"
DOMAIN_VERSION = "1"
_DOMAIN_TYPE = "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"


@dataclass(frozen=True)
class Domain:
    """Binds a signature to one chain and one ledger contract."""

    chain_id: int
    contract: str
    name: str = DOMAIN_NAME
    version: str = DOMAIN_VERSION

    def separator(self) -> bytes:
        return self._separator

    @cached_property
    def _separator(self) -> bytes:  # computed once per domain: every signature needs it
        return keccak(
            encode(
                ["bytes32", "bytes32", "bytes32", "uint256", "address"],
                [
                    keccak(text=_DOMAIN_TYPE),
                    keccak(text=self.name),
                    keccak(text=self.version),
                    self.chain_id,
                    to_checksum_address(self.contract),
                ],
            )
        )

    def digest(self, message: Message) -> bytes:
        return keccak256(b"\x19\x01" + self._separator + message.struct_hash())

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "chainId": self.chain_id,
            "verifyingContract": to_checksum_address(self.contract),
        }


_TYPE_HASHES: dict[type, bytes] = {}


@cache
def _encoders(message_fields: tuple[tuple[str, str, str], ...]) -> tuple[tuple[str, Callable[[Any], bytes]], ...]:
    """(attribute, word encoder) of each of a message's fields (its FIELDS), in order."""
    return tuple((a, word_encoder(t)) for t, _, a in message_fields)


def _type_hash(cls: type[Message]) -> bytes:
    if cls not in _TYPE_HASHES:
        _TYPE_HASHES[cls] = keccak(text=cls.type_string())
    return _TYPE_HASHES[cls]


def abi_word(solidity_type: str, value: Any) -> bytes:
    """One static field as its 32-byte ABI word, refusing what eth-abi would refuse."""
    return word_encoder(solidity_type)(value)


def _address_word(value: Any) -> bytes:
    raw = bytes.fromhex(str(value).removeprefix("0x"))
    if len(raw) != 20:
        raise ValueError(f"not an address: {value!r}")
    return b"\x00" * 12 + raw


def _bytes32_word(value: Any) -> bytes:
    if not isinstance(value, bytes | bytearray) or len(value) != 32:
        raise ValueError(f"not 32 bytes: {value!r}")
    return bytes(value)


@cache
def word_encoder(solidity_type: str) -> Callable[[Any], bytes]:
    """The function that makes `solidity_type`'s ABI word (made once per type: the type string
    is read here, not for every value)."""
    if solidity_type == "address":
        return _address_word
    if solidity_type == "bytes32":
        return _bytes32_word
    bits = int(solidity_type.removeprefix("uint"))
    limit = 1 << bits

    def uint_word(value: Any) -> bytes:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < limit:
            raise ValueError(f"not a {solidity_type}: {value!r}")
        return value.to_bytes(32, "big")

    return uint_word


@dataclass(frozen=True)
class Message:
    """Base of the three signed messages; subclasses list their EIP-712 fields in order."""

    TYPE_NAME: ClassVar[str]
    FIELDS: ClassVar[tuple[tuple[str, str, str], ...]]  # (solidity type, EIP-712 name, attribute)

    @classmethod
    def type_string(cls) -> str:
        return f"{cls.TYPE_NAME}(" + ",".join(f"{t} {n}" for t, n, _ in cls.FIELDS) + ")"

    def struct_hash(self) -> bytes:
        # Every field is one static ABI word, so the encoding is the words side by side; done
        # by hand because eth-abi's general encoder costs more than the signature itself.
        cls = type(self)
        words = [_type_hash(cls)]
        words.extend(encode_word(getattr(self, a)) for a, encode_word in _encoders(cls.FIELDS))
        return keccak256(b"".join(words))

    def typed_data(self, domain: Domain) -> dict[str, Any]:
        """The message as EIP-712 JSON, what `eth_signTypedData_v4` takes."""
        message = {}
        for solidity_type, name, attr in self.FIELDS:
            value = getattr(self, attr)
            message[name] = "0x" + value.hex() if solidity_type == "bytes32" else value
        return {
            "types": {
                "EIP712Domain": [
                    {"name": "name", "type": "string"},
                    {"name": "version", "type": "string"},
                    {"name": "chainId", "type": "uint256"},
                    {"name": "verifyingContract", "type": "address"},
                ],
                self.TYPE_NAME: [{"name": n, "type": t} for t, n, _ in self.FIELDS],
            },
            "primaryType": self.TYPE_NAME,
            "domain": domain.as_json(),
            "message": message,
        }


MAX_OP_POINTS = 2**48 - 1  # the most points one operation may move (the ledger's MAX_OP_POINTS)


@dataclass(frozen=True)
class EarnMessage(Message):
    """A partner's authorization to issue at most `max_points` points for a purchase of
    `spend` minor units. `max_points` defaults to the ledger's per-operation cap, i.e. no cap
    of the partner's own; a partner that knows its quote signs it (issue 10, finding 5)."""

    partner_id: int
    member: str
    spend: int
    receipt_ref: bytes
    nonce: int
    deadline: int
    max_points: int = MAX_OP_POINTS

    TYPE_NAME = "Earn"
    FIELDS = (
        ("uint32", "partnerId", "partner_id"),
        ("address", "member", "member"),
        ("uint256", "spend", "spend"),
        ("uint256", "maxPoints", "max_points"),
        ("bytes32", "receiptRef", "receipt_ref"),
        ("uint256", "nonce", "nonce"),
        ("uint256", "deadline", "deadline"),
    )


@dataclass(frozen=True)
class CampaignEarnMessage(Message):
    """(r2) An earn that names one of the partner's campaigns: the signature binds the
    campaign, and `max_points` bounds the points with the bonus included. An earn naming no
    campaign is an `EarnMessage` (its encoding is unchanged)."""

    partner_id: int
    member: str
    spend: int
    campaign_id: int
    receipt_ref: bytes
    nonce: int
    deadline: int
    max_points: int = MAX_OP_POINTS

    TYPE_NAME = "CampaignEarn"
    FIELDS = (
        ("uint32", "partnerId", "partner_id"),
        ("address", "member", "member"),
        ("uint256", "spend", "spend"),
        ("uint256", "maxPoints", "max_points"),
        ("uint64", "campaignId", "campaign_id"),
        ("bytes32", "receiptRef", "receipt_ref"),
        ("uint256", "nonce", "nonce"),
        ("uint256", "deadline", "deadline"),
    )


@dataclass(frozen=True)
class CampaignMessage(Message):
    """(r2) A partner registering a campaign: from `start` to `end` (unix seconds, end
    excluded), for earns of members whose tier index i has bit 1 << i in `tier_mask` and whose
    spend is at least `min_spend`, a bonus of base points x `bonus_bps` / 10,000 +
    `fixed_bonus`, within `budget` points in all."""

    partner_id: int
    start: int
    end: int
    bonus_bps: int
    fixed_bonus: int
    min_spend: int
    tier_mask: int
    budget: int
    nonce: int
    deadline: int

    TYPE_NAME = "Campaign"
    FIELDS = (
        ("uint32", "partnerId", "partner_id"),
        ("uint40", "start", "start"),
        ("uint40", "end", "end"),
        ("uint24", "bonusBps", "bonus_bps"),
        ("uint48", "fixedBonus", "fixed_bonus"),
        ("uint64", "minSpend", "min_spend"),
        ("uint8", "tierMask", "tier_mask"),
        ("uint128", "budget", "budget"),
        ("uint256", "nonce", "nonce"),
        ("uint256", "deadline", "deadline"),
    )

    def terms(self) -> tuple[int, ...]:
        """The contract's `CampaignTerms` tuple."""
        return (
            self.partner_id,
            self.start,
            self.end,
            self.bonus_bps,
            self.fixed_bonus,
            self.min_spend,
            self.tier_mask,
            self.budget,
        )


@dataclass(frozen=True)
class RedeemMessage(Message):
    """A member's authorization to burn `points` as payment at a partner."""

    member: str
    partner_id: int
    points: int
    receipt_ref: bytes
    nonce: int
    deadline: int

    TYPE_NAME = "Redeem"
    FIELDS = (
        ("address", "member", "member"),
        ("uint32", "partnerId", "partner_id"),
        ("uint256", "points", "points"),
        ("bytes32", "receiptRef", "receipt_ref"),
        ("uint256", "nonce", "nonce"),
        ("uint256", "deadline", "deadline"),
    )


@dataclass(frozen=True)
class ReverseMessage(Message):
    """A partner's authorization to take back `points` of one of its earns (by leaf)."""

    partner_id: int
    earn_leaf: bytes
    points: int
    receipt_ref: bytes
    nonce: int
    deadline: int

    TYPE_NAME = "Reverse"
    FIELDS = (
        ("uint32", "partnerId", "partner_id"),
        ("bytes32", "earnLeaf", "earn_leaf"),
        ("uint256", "points", "points"),
        ("bytes32", "receiptRef", "receipt_ref"),
        ("uint256", "nonce", "nonce"),
        ("uint256", "deadline", "deadline"),
    )


@dataclass(frozen=True)
class RefundMessage(Message):
    """(r2) The authorization of the partner at which points were redeemed to give `points`
    back of that redemption (by leaf, see `redemption_leaf`) for returned goods."""

    partner_id: int
    redemption_leaf: bytes
    points: int
    receipt_ref: bytes
    nonce: int
    deadline: int

    TYPE_NAME = "Refund"
    FIELDS = (
        ("uint32", "partnerId", "partner_id"),
        ("bytes32", "redemptionLeaf", "redemption_leaf"),
        ("uint256", "points", "points"),
        ("bytes32", "receiptRef", "receipt_ref"),
        ("uint256", "nonce", "nonce"),
        ("uint256", "deadline", "deadline"),
    )


@dataclass(frozen=True)
class AwardMessage(Message):
    """A partner's authorization to issue `points` without a purchase, for `reason` (1 bonus,
    2 goodwill, 3 referral, 4 signup, 5 employee, 6 correction, 7 retro_claim)."""

    partner_id: int
    member: str
    points: int
    reason: int
    receipt_ref: bytes
    nonce: int
    deadline: int

    TYPE_NAME = "Award"
    FIELDS = (
        ("uint32", "partnerId", "partner_id"),
        ("address", "member", "member"),
        ("uint256", "points", "points"),
        ("uint8", "reason", "reason"),
        ("bytes32", "receiptRef", "receipt_ref"),
        ("uint256", "nonce", "nonce"),
        ("uint256", "deadline", "deadline"),
    )


@dataclass(frozen=True)
class MigrateMessage(Message):
    """A member's authorization to move everything it holds to `to`, a new address of its own."""

    from_member: str
    to: str
    nonce: int
    deadline: int

    TYPE_NAME = "Migrate"
    FIELDS = (
        ("address", "from", "from_member"),
        ("address", "to", "to"),
        ("uint256", "nonce", "nonce"),
        ("uint256", "deadline", "deadline"),
    )


@dataclass(frozen=True)
class RotateSignerMessage(Message):
    """A partner's current key authorizing its replacement by `new_signer`."""

    partner_id: int
    new_signer: str
    nonce: int
    deadline: int

    TYPE_NAME = "RotateSigner"
    FIELDS = (
        ("uint32", "partnerId", "partner_id"),
        ("address", "newSigner", "new_signer"),
        ("uint256", "nonce", "nonce"),
        ("uint256", "deadline", "deadline"),
    )


@dataclass(frozen=True)
class CancelChangeMessage(Message):
    """A partner's current key withdrawing an operator's scheduled change of its signer."""

    partner_id: int
    change_id: int

    TYPE_NAME = "CancelChange"
    FIELDS = (
        ("uint32", "partnerId", "partner_id"),
        ("uint256", "changeId", "change_id"),
    )


@dataclass(frozen=True)
class CompactSignature:
    """EIP-2098 signature: `vs` is s with the parity of v in its top bit."""

    r: bytes
    vs: bytes

    @classmethod
    def from_vrs(cls, v: int, r: int, s: int) -> CompactSignature:
        parity = v - 27 if v >= 27 else v
        return cls(r=r.to_bytes(32, "big"), vs=((parity << 255) | s).to_bytes(32, "big"))

    @classmethod
    def from_bytes(cls, signature: bytes) -> CompactSignature:
        """From a 65-byte (r, s, v) signature, as wallets return it, or a 64-byte compact one."""
        if len(signature) == 64:
            return cls(r=signature[:32], vs=signature[32:])
        if len(signature) != 65:
            raise ValueError("a signature is 64 or 65 bytes")
        return cls.from_vrs(
            signature[64], int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:64], "big")
        )

    def hex(self) -> str:
        return "0x" + self.r.hex() + self.vs.hex()


def sign(domain: Domain, message: Message, private_key: bytes | str) -> CompactSignature:
    """Signs `message` for `domain` with a raw private key."""
    if isinstance(private_key, str):
        private_key = bytes.fromhex(private_key.removeprefix("0x"))
    # coincurve (libsecp256k1) directly: eth_keys would derive the public key on every call.
    signature = _signing_key(private_key).sign_recoverable(domain.digest(message), hasher=None)
    return CompactSignature.from_bytes(signature)


@lru_cache(maxsize=256)
def _signing_key(private_key: bytes) -> coincurve.PrivateKey:
    # coincurve derives two public keys when it builds a PrivateKey (~100 us): a process that
    # signs for the same few keys (a till, a gateway's managed partners) builds each once.
    return coincurve.PrivateKey(private_key)


def address_of(private_key: bytes | str) -> str:
    if isinstance(private_key, str):
        private_key = bytes.fromhex(private_key.removeprefix("0x"))
    return keys.PrivateKey(private_key).public_key.to_checksum_address()


def earn_leaf(
    *, partner_id: int, member: str, receipt_ref: bytes, spend: int, points: int, earn_month: int, bonus: int = 0
) -> bytes:
    """The Merkle leaf the ledger commits for an accepted earn (see `EarnRecord`); (r2) an earn
    with a campaign bonus (included in `points`) has the bonus as a seventh field."""
    types = ("uint32", "address", "bytes32", "uint256", "uint256", "uint32") + (("uint256",) if bonus else ())
    values = (partner_id, member, receipt_ref, spend, points, earn_month) + ((bonus,) if bonus else ())
    fields = zip(types, values, strict=True)
    return keccak256(b"".join(abi_word(t, v) for t, v in fields))  # abi.encode of static words


def redemption_leaf(
    *,
    partner_id: int,
    member: str,
    receipt_ref: bytes,
    points: int,
    expiry_month: int,
    batch_id: int,
    index: int,
) -> bytes:
    """(r2) The Merkle leaf the ledger commits for an accepted redemption: `expiry_month` is
    the latest expiry month it burnt, `index` its place among its batch's accepted ones."""
    fields = zip(
        ("uint32", "address", "bytes32", "uint256", "uint32", "uint64", "uint32"),
        (partner_id, member, receipt_ref, points, expiry_month, batch_id, index),
        strict=True,
    )
    return keccak256(b"".join(abi_word(t, v) for t, v in fields))  # abi.encode of static words


def new_receipt_salt() -> str:
    """A receipt document's salt: 128 random bits as 32 lowercase hex digits."""
    return secrets.token_hex(16)


@dataclass(frozen=True)
class Receipt:
    """The canonical receipt document of an operation; only its hash goes on-chain."""

    kind: str  # "earn", "redemption" or "reversal"
    partner_id: int
    receipt_id: str
    member_id: str
    amount_minor: int | None = None
    currency: str | None = None
    points: int | None = None
    issued_at: str = ""  # ISO 8601, UTC
    extra: dict[str, Any] = field(default_factory=dict)
    # (r2) Random hex, 128 bits or more: without it, anyone could confirm a guessed card number,
    # amount and time against the hash on-chain. Empty only in receipts made before revision 2
    # (their documents have no salt key, so their hashes are unchanged).
    salt: str = ""

    def canonical(self) -> bytes:
        """Sorted keys, no spaces, UTF-8: the same bytes for the same receipt, everywhere."""
        return self._canonical

    def ref(self) -> bytes:
        """keccak-256 of the canonical document: the receipt reference carried by events."""
        return self._ref

    # Computed once per (immutable) receipt: a gateway reads both several times per request.
    @cached_property
    def _canonical(self) -> bytes:
        document = {name: getattr(self, name) for name in _RECEIPT_FIELDS}
        if not self.salt:
            del document["salt"]  # a receipt from before the salt hashes as it always did
        return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()

    @cached_property
    def _ref(self) -> bytes:
        return keccak256(self._canonical)


_RECEIPT_FIELDS = tuple(f.name for f in fields(Receipt))
