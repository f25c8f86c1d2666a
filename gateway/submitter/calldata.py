"""The calldata of an earn batch, encoded by hand (issue 15).

`earnBatch(EarnOp[])` takes an array of a struct whose ten fields are all static, so its ABI
encoding is the selector, the array's offset and length, then ten 32-byte words per
operation: no need for eth_abi's general encoder, nor for checksummed addresses and message
objects built only to be flattened again. tests/gateway/test_submitter_calldata.py checks
it byte for byte against `Ledger.encode_call`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from partners.signing import MAX_OP_POINTS

_WORD = 32
_MAX_POINTS = MAX_OP_POINTS.to_bytes(_WORD, "big")  # an earn's maxPoints: the ledger's cap


def _uint(value: int, bits: int = 256) -> bytes:
    if not 0 <= value < 1 << bits:
        raise ValueError(f"{value} is not a uint{bits}")
    return value.to_bytes(_WORD, "big")


def _bytes32(hex_value: str) -> bytes:
    raw = bytes.fromhex(hex_value[2:])
    if len(raw) != _WORD:
        raise ValueError("expected 32 bytes")
    return raw


def _address(hex_value: str) -> bytes:
    raw = bytes.fromhex(hex_value[2:])
    if len(raw) != 20:
        raise ValueError(f"{hex_value} is not an address")
    return bytes(12) + raw


def _signature(hex_value: str) -> bytes:
    """r and vs (EIP-2098) of a 64- or 65-byte signature, as `CompactSignature.from_bytes`."""
    raw = bytes.fromhex(hex_value[2:])
    if len(raw) == 64:
        return raw
    if len(raw) != 65:
        raise ValueError("a signature is 64 or 65 bytes")
    v = raw[64]
    parity = v - 27 if v >= 27 else v
    vs = (parity << 255) | int.from_bytes(raw[32:64], "big")
    return raw[:32] + _uint(vs)


def earn_calldata(selector: bytes, ops: Sequence[Any], addresses: Mapping[str, str]) -> bytes:
    """`earnBatch` of these operation rows (the ledger's points cap and the row's campaign, or
    0, as `SignedEarn(EarnMessage | CampaignEarnMessage).as_tuple()` has them), `addresses` by
    member id for the rows that do not carry the address they were signed for."""
    parts = [selector, _uint(_WORD), _uint(len(ops))]
    for op in ops:
        parts += (
            _uint(int(op.partner_id), 32),
            _address(op.member_address or addresses[op.member_id]),
            _uint(int(op.amount_minor or 0)),
            _MAX_POINTS,
            _uint(int(getattr(op, "campaign_id", None) or 0), 64),
            _bytes32(op.receipt_ref),
            _uint(int(op.nonce)),
            _uint(int(op.deadline)),
            _signature(op.signature),
        )
    return b"".join(parts)
