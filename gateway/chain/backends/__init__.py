"""The chain port and its backends: py-evm (`embedded.py`), revm (`revm/`), any JSON-RPC
node such as anvil (`node.py`). `base.py` declares what every backend offers; `errors.py`
how a chain's refusals are typed. Code that holds only a `Web3` finds its port with `chain_of`.
"""

from __future__ import annotations

from web3 import Web3

from gateway.chain.backends.base import EMBEDDED_GAS_LIMIT, ChainBackend, JsonRpcBackend, attached
from gateway.chain.backends.embedded import ENGINE_VARIABLE, ENGINES, EmbeddedChain, embedded_engine
from gateway.chain.backends.errors import AlreadyKnown, NonceTooLow, Reverted, WrongNonce
from gateway.chain.backends.node import (
    ANVIL_MNEMONIC,
    AnvilNode,
    KeepAliveHTTPProvider,
    RpcChain,
    anvil_binary,
    anvil_dev_keys,
    free_port,
)


def chain_of(w3: Web3) -> ChainBackend:
    """The port serving `w3`: the backend that built it, or a JSON-RPC port over a `Web3`
    built elsewhere on any JSON-RPC provider (kept on the provider for next time)."""
    return attached(w3) or RpcChain.over(w3)


__all__ = [
    "ANVIL_MNEMONIC",
    "EMBEDDED_GAS_LIMIT",
    "ENGINES",
    "ENGINE_VARIABLE",
    "AlreadyKnown",
    "AnvilNode",
    "ChainBackend",
    "EmbeddedChain",
    "JsonRpcBackend",
    "KeepAliveHTTPProvider",
    "NonceTooLow",
    "Reverted",
    "RpcChain",
    "WrongNonce",
    "anvil_binary",
    "anvil_dev_keys",
    "chain_of",
    "embedded_engine",
    "free_port",
]
