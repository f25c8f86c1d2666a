"""Signed transactions for the revm node: decoding (legacy, EIP-2930, EIP-1559), the
sender's recovery, their JSON-RPC form; and the node's JSON-RPC error."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import coincurve
import rlp
from eth_utils import keccak, to_checksum_address

from gateway.chain.jsonrpc import data_bytes, to_data, to_quantity

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def eth_tester_keys(count: int = 10) -> list[str]:
    """eth-tester's development keys (0x...01 to 0x...0a): the same accounts on both engines."""
    return ["0x" + i.to_bytes(32, "big").hex() for i in range(1, count + 1)]


class RpcError(Exception):
    """A JSON-RPC error answer."""

    def __init__(self, code: int, message: str, data: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.data = code, message, data

    def as_json(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


def _addr(value: Any) -> bytes:
    raw = data_bytes(value)
    if len(raw) != 20:
        raise RpcError(-32602, f"invalid address {value!r}")
    return raw


@lru_cache(maxsize=65_536)
def _hex_addr(raw: bytes) -> str:
    """Checksummed (EIP-55): a keccak each time, and the same few addresses come back."""
    return to_checksum_address(raw)


# ------------------------------------------------------------------ transactions


@dataclass
class Tx:
    """A decoded signed transaction."""

    raw: bytes
    hash: bytes
    type: int
    chain_id: int | None
    nonce: int
    gas: int
    to: bytes | None
    value: int
    data: bytes
    sender: bytes
    max_fee: int
    max_priority_fee: int
    access_list: list[tuple[bytes, list[bytes]]]
    v: int
    r: int
    s: int

    def effective_price(self, base_fee: int) -> int:
        if self.type == 2:
            return min(self.max_fee, base_fee + self.max_priority_fee)
        return self.max_fee

    def as_json(self, block_hash: bytes, number: int, index: int, base_fee: int) -> dict[str, Any]:
        out: dict[str, Any] = {
            "hash": to_data(self.hash),
            "type": to_quantity(self.type),
            "nonce": to_quantity(self.nonce),
            "blockHash": to_data(block_hash),
            "blockNumber": to_quantity(number),
            "transactionIndex": to_quantity(index),
            "from": _hex_addr(self.sender),
            "to": _hex_addr(self.to) if self.to else None,
            "value": to_quantity(self.value),
            "gas": to_quantity(self.gas),
            "gasPrice": to_quantity(self.effective_price(base_fee)),
            "input": to_data(self.data),
            "v": to_quantity(self.v),
            "r": to_quantity(self.r),
            "s": to_quantity(self.s),
        }
        if self.chain_id is not None:
            out["chainId"] = to_quantity(self.chain_id)
        if self.type >= 1:
            out["accessList"] = [
                {"address": _hex_addr(a), "storageKeys": [to_data(k) for k in keys_]} for a, keys_ in self.access_list
            ]
            out["yParity"] = to_quantity(self.v)
        if self.type == 2:
            out["maxFeePerGas"] = to_quantity(self.max_fee)
            out["maxPriorityFeePerGas"] = to_quantity(self.max_priority_fee)
        return out


def _recover(sighash: bytes, v: int, r: int, s: int) -> bytes:
    if not (0 < r < SECP256K1_N and 0 < s <= SECP256K1_N // 2):
        raise RpcError(-32000, "invalid transaction signature")
    signature = r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([v])
    try:
        public = coincurve.PublicKey.from_signature_and_message(signature, sighash, hasher=None)
    except Exception as exc:
        raise RpcError(-32000, f"invalid transaction signature: {exc}") from exc
    return keccak(public.format(compressed=False)[1:])[12:]


def decode_transaction(raw: bytes) -> Tx:
    """Decodes a legacy, EIP-2930 or EIP-1559 signed transaction and recovers its sender."""
    if not raw:
        raise RpcError(-32602, "empty transaction")
    try:
        if raw[0] >= 0xC0:
            nonce, price, gas, to, value, data, v, r, s = rlp.decode(raw)
            v_, r_, s_ = (int.from_bytes(x, "big") for x in (v, r, s))
            fields = [nonce, price, gas, to, value, data]
            if v_ >= 35:
                chain_id: int | None = (v_ - 35) // 2
                sighash = keccak(rlp.encode([*fields, chain_id, 0, 0]))
                parity = (v_ - 35) % 2
            else:
                chain_id, sighash, parity = None, keccak(rlp.encode(fields)), v_ - 27
            typ, max_fee, tip, access = 0, int.from_bytes(price, "big"), int.from_bytes(price, "big"), []
        elif raw[0] in (1, 2):
            typ = raw[0]
            items = rlp.decode(raw[1:])
            if typ == 2:
                cid, nonce, tip_b, fee_b, gas, to, value, data, access, v, r, s = items
                max_fee, tip = int.from_bytes(fee_b, "big"), int.from_bytes(tip_b, "big")
                sighash = keccak(b"\x02" + rlp.encode(items[:9]))
            else:
                cid, nonce, price, gas, to, value, data, access, v, r, s = items
                max_fee = tip = int.from_bytes(price, "big")
                sighash = keccak(b"\x01" + rlp.encode(items[:8]))
            chain_id = int.from_bytes(cid, "big")
            v_, r_, s_ = (int.from_bytes(x, "big") for x in (v, r, s))
            parity = v_
        else:
            raise RpcError(-32000, f"transaction type {raw[0]} not supported")
    except RpcError:
        raise
    except Exception as exc:  # noqa: BLE001 - any malformed encoding
        raise RpcError(-32602, f"malformed transaction: {exc}") from exc
    if parity not in (0, 1):
        raise RpcError(-32000, "invalid transaction signature")
    if to not in (b"",) and len(to) != 20:
        raise RpcError(-32602, "malformed transaction: bad recipient")
    return Tx(
        raw=raw,
        hash=keccak(raw),
        type=typ,
        chain_id=chain_id,
        nonce=int.from_bytes(nonce, "big"),
        gas=int.from_bytes(gas, "big"),
        to=bytes(to) or None,
        value=int.from_bytes(value, "big"),
        data=bytes(data),
        sender=_recover(sighash, parity, r_, s_),
        max_fee=max_fee,
        max_priority_fee=tip,
        access_list=[(bytes(a), [bytes(k) for k in ks]) for a, ks in access],
        v=v_,
        r=r_,
        s=s_,
    )
