"""The contract's custom errors decoded (`DecodedError(name, args)`, so callers never see a
hex blob), and JSON-RPC requests through the chain's port that raise a revert decoded."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from eth_abi import decode
from eth_utils import keccak
from hexbytes import HexBytes
from web3 import Web3

from gateway.chain.backends import Reverted, chain_of
from gateway.chain.contract.abi import _hexed, _plain, artifact
from gateway.core.errors import ErrorCode


@dataclass(frozen=True)
class DecodedError:
    """A contract custom error, decoded: e.g. InsufficientPoints(member, balance, needed)."""

    name: str
    args: dict[str, Any]

    def __str__(self) -> str:
        inner = ", ".join(f"{k}={v}" for k, v in self.args.items())
        return f"{self.name}({inner})"


@cache
def _error_table() -> dict[bytes, tuple[str, list[str], list[str]]]:
    table = {}
    for item in artifact()["abi"]:
        if item["type"] == "error":
            types = [i["type"] for i in item["inputs"]]
            selector = keccak(text=f"{item['name']}({','.join(types)})")[:4]
            table[selector] = (item["name"], [i["name"] for i in item["inputs"]], types)
    return table


def decode_error(data: bytes | str | None) -> DecodedError:
    """Decodes revert data (or an OperationRejected reason) into the contract's error."""
    if isinstance(data, str):
        data = HexBytes(data)
    if not data or len(data) < 4:
        return DecodedError("Reverted", {})
    entry = _error_table().get(bytes(data[:4]))
    if entry is None:
        return DecodedError("UnknownError", {"data": "0x" + bytes(data).hex()})
    name, names, types = entry
    values = decode(types, bytes(data[4:]))
    return DecodedError(name, {n: _hexed(_plain(v)) for n, v in zip(names, values, strict=True)})


class LedgerRevert(Reverted):
    """A transaction or call reverted with a decoded contract error (code ledger_revert: a
    refusal by the ledger, not an unavailable chain)."""

    code = ErrorCode.LEDGER_REVERT

    def __init__(self, error: DecodedError, data: bytes | None = None) -> None:
        super().__init__(str(error), data=data, error=error.name, args=error.args)
        self.error = error


def rpc(w3: Web3, method: str, params: list[Any]) -> Any:
    """One JSON-RPC request through the chain's port (no web3 formatting layers); a revert
    comes back as `LedgerRevert` with the contract's error decoded."""
    try:
        return chain_of(w3).request(method, params)
    except Reverted as exc:
        raise LedgerRevert(decode_error(exc.data), exc.data) from exc


def rpc_many(w3: Web3, requests: list[tuple[str, list[Any]]]) -> list[Any]:
    """Several JSON-RPC requests in one round trip where the chain allows (one by one on
    eth-tester, in-process); reverts decoded as in `rpc`."""
    try:
        return chain_of(w3).batch_request(requests)
    except Reverted as exc:
        raise LedgerRevert(decode_error(exc.data), exc.data) from exc
