"""The CoalitionPoints ABI: its compiled artifacts, function selectors and event topics,
the contract's numbering of operation kinds and award reasons, and ABI values made friendly."""

from __future__ import annotations

import json
from functools import cache, lru_cache
from typing import Any

from eth_utils import keccak, to_checksum_address

from gateway.chain.compiler import ARTIFACTS_DIR

KIND_EARN, KIND_REDEEM, KIND_REVERSE = 1, 2, 3
MODULE = "CoalitionPointsAdmin"  # the ledger's operator module, run through its fallback
PROGRAMS_MODULE = "CoalitionPointsPrograms"  # awards, assigned tiers, migration (via the module)
KIND_AWARD = 4
KIND_REFUND = 5  # (r2) refunds of redemptions, in the programme module
AWARD_REASONS = {
    "bonus": 1,
    "goodwill": 2,
    "referral": 3,
    "signup": 4,
    "employee": 5,
    "correction": 6,
    "retro_claim": 7,
}


@cache
def artifact(name: str = "CoalitionPoints") -> dict[str, Any]:
    data: dict[str, Any] = json.loads((ARTIFACTS_DIR / f"{name}.json").read_text())
    return data


@cache
def _abi_tables() -> tuple[
    dict[str, tuple[bytes, list[str], list[str]]],
    dict[bytes, tuple[str, list[tuple[str, str]], list[tuple[str, str]]]],
]:
    """Function selectors with input/output types, and event topics with their fields."""
    functions = {}
    events = {}
    for item in artifact()["abi"]:
        if item["type"] == "function":
            inputs = [_abi_type(i) for i in item["inputs"]]
            selector = keccak(text=f"{item['name']}({','.join(inputs)})")[:4]
            functions[item["name"]] = (selector, inputs, [_abi_type(o) for o in item["outputs"]])
        elif item["type"] == "event":
            topic = keccak(text=f"{item['name']}({','.join(_abi_type(i) for i in item['inputs'])})")
            indexed = [(i["name"], _abi_type(i)) for i in item["inputs"] if i["indexed"]]
            plain = [(i["name"], _abi_type(i)) for i in item["inputs"] if not i["indexed"]]
            events[topic] = (item["name"], indexed, plain)
    return functions, events


@lru_cache(maxsize=64)
def _static_tuple_array(abi_type: str) -> tuple[str, ...] | None:
    """The field types of `(t1,...,tn)[]` when every one is a word `abi_word` encodes, else None."""
    if not (abi_type.startswith("(") and abi_type.endswith(")[]")) or "(" in abi_type[1:]:
        return None
    fields = tuple(abi_type[1:-3].split(","))
    static = all(t in ("address", "bytes32") or (t.startswith("uint") and t[4:].isdigit()) for t in fields)
    return fields if static else None


def _abi_type(param: dict[str, Any]) -> str:
    if param["type"].startswith("tuple"):
        inner = ",".join(_abi_type(c) for c in param["components"])
        return f"({inner}){param['type'][5:]}"
    return str(param["type"])


def _hexed(value: Any) -> Any:
    return "0x" + value.hex() if isinstance(value, bytes) else value


def _plain(value: Any) -> Any:
    """ABI-decoded values made friendly: checksummed addresses, nested tuples kept."""
    if isinstance(value, str) and value.startswith("0x") and len(value) == 42:
        return to_checksum_address(value)
    if isinstance(value, (tuple, list)) and not isinstance(value, bytes):
        return type(value)(_plain(v) for v in value)
    return value
