"""The word-by-word calldata of batch calls is byte for byte what eth-abi encodes."""

from __future__ import annotations

import random

import pytest
from eth_abi import encode
from eth_utils import keccak
from web3 import Web3

from gateway.chain.ledger import EarnRecord, Ledger, SignedEarn, SignedRedeem, SignedReverse, _abi_tables
from partners.signing import CompactSignature, EarnMessage, RedeemMessage, ReverseMessage

LEDGER = Ledger(Web3(), "0x" + "11" * 20)
FUNCTIONS, _ = _abi_tables()


def _reference(function: str, items: list[tuple[object, ...]]) -> bytes:
    selector, inputs, _ = FUNCTIONS[function]
    return selector + encode(inputs, [items])


def _signature(rng: random.Random) -> CompactSignature:
    return CompactSignature(r=rng.randbytes(32), vs=rng.randbytes(32))


def _member(rng: random.Random) -> str:
    return "0x" + rng.randbytes(20).hex()


@pytest.mark.parametrize("size", [0, 1, 7, 200])
def test_batch_calldata_matches_eth_abi(size: int) -> None:
    rng = random.Random(size)
    big = [0, 1, 2**256 - 1, 2**255, rng.getrandbits(256)]
    earns = [
        SignedEarn(
            EarnMessage(
                rng.choice([1, 2**32 - 1]),
                _member(rng),
                rng.choice(big),
                rng.randbytes(32),
                rng.choice(big),
                rng.choice(big),
            ),
            _signature(rng),
        ).as_tuple()
        for _ in range(size)
    ]
    assert LEDGER.encode_call("earnBatch", earns) == _reference("earnBatch", earns)
    redeems = [
        SignedRedeem(
            RedeemMessage(
                _member(rng),
                rng.getrandbits(32),
                rng.choice(big),
                rng.randbytes(32),
                rng.choice(big),
                rng.getrandbits(48),
            ),
            _signature(rng),
        ).as_tuple()
        for _ in range(size)
    ]
    assert LEDGER.encode_call("redeemBatch", redeems) == _reference("redeemBatch", redeems)
    # A reversal carries its earn's Merkle proof (a dynamic array): eth-abi encodes it.
    record = EarnRecord(3, 1, _member(rng), keccak(text="r"), 1000, 10, 2026 * 12, [keccak(text="p")])
    reversals = [
        SignedReverse(
            ReverseMessage(1, record.leaf(), 5, keccak(text="x"), 9, 10**10), _signature(rng), record
        ).as_tuple()
    ]
    assert LEDGER.encode_call("reverseBatch", reversals) == _reference("reverseBatch", reversals)


def test_out_of_range_fields_are_refused_as_eth_abi_refuses_them() -> None:
    rng = random.Random(1)
    too_big = SignedEarn(
        EarnMessage(2**32, _member(rng), 1, rng.randbytes(32), 1, 1), _signature(rng)
    ).as_tuple()  # partner id over uint32
    with pytest.raises(ValueError):
        LEDGER.encode_call("earnBatch", [too_big])
    with pytest.raises(Exception):  # noqa: B017, PT011 - eth-abi's own EncodingError
        _reference("earnBatch", [too_big])
