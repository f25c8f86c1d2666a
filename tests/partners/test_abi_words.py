"""The hand-written EIP-712 encoding (partners/signing.py) against eth-abi and eth-account:
the same words, the same hashes, and the same refusals of values the ledger could not take."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from eth_abi import encode
from eth_account.messages import encode_typed_data
from eth_utils import keccak

from partners.signing import (
    CampaignEarnMessage,
    Domain,
    EarnMessage,
    Receipt,
    abi_word,
    keccak256,
    redemption_leaf,
)

ADDRESS = "0x" + "ab" * 20
DOMAIN = Domain(31337, "0x" + "cd" * 20)


@pytest.mark.parametrize(
    ("solidity_type", "value"),
    [
        ("uint32", 0),
        ("uint32", 2**32 - 1),
        ("uint256", 2**256 - 1),
        ("address", ADDRESS),
        ("address", ADDRESS.upper().replace("0X", "0x")),
        ("bytes32", b"\x01" * 32),
    ],
)
def test_a_word_is_what_eth_abi_encodes(solidity_type: str, value: Any) -> None:
    assert abi_word(solidity_type, value) == encode([solidity_type], [value])


@pytest.mark.parametrize(
    ("solidity_type", "value"),
    [
        ("uint32", 2**32),  # one past the type
        ("uint256", 2**256),
        ("uint32", -1),
        ("uint32", True),  # a bool is an int to Python, not to the ABI
        ("uint32", Decimal(5)),
        ("uint32", "5"),
        ("uint32", 5.0),
        ("address", "0x" + "ab" * 19),  # 19 bytes
        ("address", "0x" + "zz" * 20),
        ("bytes32", b"\x01" * 31),
        ("bytes32", "0x" + "01" * 32),  # hex text, not bytes
    ],
)
def test_a_value_the_type_cannot_hold_is_refused(solidity_type: str, value: Any) -> None:
    with pytest.raises(ValueError):
        abi_word(solidity_type, value)


def test_keccak256_is_ethereums_keccak() -> None:
    for data in (b"", b"\x19\x01", bytes(range(256)) * 3):
        assert keccak256(data) == keccak(data)


@pytest.mark.parametrize(
    "message",
    [
        EarnMessage(7, ADDRESS, 1_250, b"\x02" * 32, 3, 2**40),
        CampaignEarnMessage(7, ADDRESS, 1_250, 9, b"\x02" * 32, 3, 2**40),
    ],
)
def test_the_digest_is_eth_accounts_typed_data_hash(message: Any) -> None:
    signable = encode_typed_data(full_message=message.typed_data(DOMAIN))
    assert DOMAIN.digest(message) == keccak(b"\x19\x01" + signable.header + signable.body)


def test_a_message_field_out_of_range_is_refused_when_hashed() -> None:
    with pytest.raises(ValueError):
        DOMAIN.digest(EarnMessage(2**32, ADDRESS, 1_250, b"\x02" * 32, 3, 2**40))  # partner id is a uint32


def test_a_leaf_is_the_abi_encoding_of_its_fields() -> None:
    fields = (7, ADDRESS, b"\x03" * 32, 500, 24_300, 12, 4)
    types = ["uint32", "address", "bytes32", "uint256", "uint32", "uint64", "uint32"]
    leaf = redemption_leaf(
        partner_id=7, member=ADDRESS, receipt_ref=b"\x03" * 32, points=500, expiry_month=24_300, batch_id=12, index=4
    )
    assert leaf == keccak(encode(types, list(fields)))


def test_a_receipt_reference_is_the_keccak_of_its_sorted_document() -> None:
    receipt = Receipt(kind="earn", partner_id=1, receipt_id="R-1", member_id="card-1", amount_minor=1_250, salt="ab")
    assert receipt.canonical().startswith(b'{"amount_minor":1250,"currency":null,"extra":{}')
    assert receipt.ref() == keccak(receipt.canonical())
