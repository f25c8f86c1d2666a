"""The embedded chain on revm: the port over an in-process `RevmNode`.

What differs from a full node, on purpose: blocks carry no Merkle-Patricia roots
(`stateRoot`, `transactionsRoot`, `receiptsRoot` are zero); inside the EVM the BASEFEE and
GASPRICE opcodes read 0 (pyrevm fixes them) while fees are charged as EIP-1559 says;
Cancun rules (pyrevm 0.3.7 knows no later fork); no blob transactions.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from web3 import Web3
from web3.providers.base import BaseProvider

from gateway.chain.backends.base import JsonRpcBackend, Request, attach
from gateway.chain.backends.embedded import EmbeddedChain
from gateway.chain.backends.revm.node import RevmNode
from gateway.chain.backends.revm.state import EMBEDDED_CHAIN_ID


class RevmProvider(BaseProvider):
    """web3's provider for an in-process `RevmNode`: answers as a JSON-RPC node would."""

    def __init__(self, node: RevmNode) -> None:
        super().__init__()
        self.node = node
        self._ids = iter(range(1, 2**62))

    def make_request(self, method: Any, params: Any) -> Any:
        return self.node.request(str(method), params, next(self._ids))

    def make_batch_request(self, requests: list[tuple[Any, Any]]) -> Any:
        return [self.node.request(str(m), p, i) for i, (m, p) in enumerate(requests)]

    def is_connected(self, show_traceback: bool = False) -> bool:
        return True


class RevmChain(JsonRpcBackend, EmbeddedChain):
    """The embedded chain on revm: `EmbeddedChain(engine="revm")` builds one. Its node answers
    JSON-RPC itself, so the port's requests, batches and controls are the JSON-RPC ones."""

    name = "embedded"
    engine_name = "revm"
    read_ahead = True  # answers in JSON-RPC form, as a node's

    def __init__(
        self,
        path: Path | None = None,
        *,
        engine: str | None = None,
        chain_id: int = EMBEDDED_CHAIN_ID,
        dev_keys: list[str] | None = None,
    ) -> None:
        self.path = path
        self.node = RevmNode(path, chain_id=chain_id, dev_keys=dev_keys)
        self._provider_ = RevmProvider(self.node)
        self.w3 = Web3(self._provider_)
        attach(self)

    @property
    def dev_keys(self) -> list[str]:
        return list(self.node.dev_keys)

    @property
    def chain_id(self) -> int:
        return self.node.chain_id

    def _send(self, method: str, params: Any) -> dict[str, Any]:
        return self._provider_.make_request(method, params)

    def _send_batch(self, requests: Sequence[Request]) -> list[dict[str, Any]]:
        return self._provider_.make_batch_request(list(requests))

    @contextmanager
    def _controls(self) -> Iterator[None]:
        with self.node.lock:
            yield

    def latest_timestamp(self) -> int:
        return self.node.head_timestamp

    def fund(self, address: str, wei: int) -> None:
        self.request("eth_sendTransaction", [{"from": self.w3.eth.accounts[-1], "to": address, "value": hex(wei)}])

    def close(self) -> None:
        self.node.close()
