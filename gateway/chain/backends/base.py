"""The chain port: what every chain backend offers, whatever runs the chain.

Like eth-tester's `backends/base.py`, one small interface; the same behaviour suite
(tests/chain/test_port.py) runs against each implementation: py-evm through eth-tester
(`embedded.py`), the revm engine (`revm/`), and any JSON-RPC node such as anvil (`node.py`).

- `request` / `batch_request`: JSON-RPC requests, the results only; a refusal is raised as
  a typed error (`errors.py`: `Reverted`, `NonceTooLow`, `AlreadyKnown`, `ChainError`...).
  Results are in JSON-RPC form (0x-hex quantities and data), except on the py-evm engine,
  whose answers web3 formats into Python values: read quantities with `jsonrpc.quantity`,
  data with `HexBytes`, and both forms read the same.
- `answer`: a request's whole JSON-RPC answer in JSON-RPC form, errors included, for
  relaying to a client (the read-only endpoint).
- `snapshot` / `revert` / `travel_to` / `mine` / `fund`: development controls; chains that
  lack them raise `ChainError`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from web3 import Web3

from gateway.chain.backends.errors import raise_for_error
from gateway.core.errors import ChainError

EMBEDDED_GAS_LIMIT = 60_000_000

Request = tuple[str, list[Any]]


class ChainBackend(ABC):
    """A chain the ledger runs on."""

    name: str
    w3: Web3
    # Whether paged readers (gateway.chain.events) should fetch the next page of logs on a
    # thread of their own while the caller decodes this one, sizing pages to their logs.
    read_ahead = True

    @property
    def chain_id(self) -> int:
        return int(self.w3.eth.chain_id)

    @property
    @abstractmethod
    def dev_keys(self) -> list[str]:
        """Private keys funded on this chain for development; empty on a real network."""

    # -------------------------------------------------------------- requests

    @abstractmethod
    def request(self, method: str, params: list[Any]) -> Any:
        """The result of one JSON-RPC request; raises the typed error of a refusal, and
        `ChainError` when the chain cannot be reached."""

    @abstractmethod
    def batch_request(self, requests: Sequence[Request]) -> list[Any]:
        """The results of several requests, in order: in one round trip where the backend
        can. Raises as `request` does for the first that failed."""

    @abstractmethod
    def answer(self, method: str, params: Any, request_id: Any) -> dict[str, Any]:
        """The JSON-RPC answer (`result` or `error`) to one request, in JSON-RPC form."""

    # -------------------------------------------------------------- development controls

    @abstractmethod
    def snapshot(self) -> Any: ...

    @abstractmethod
    def revert(self, snapshot: Any) -> None: ...

    @abstractmethod
    def travel_to(self, timestamp: int) -> None:
        """Mines a block with `timestamp`; later blocks follow it."""

    @abstractmethod
    def mine(self, blocks: int = 1) -> None: ...

    @abstractmethod
    def fund(self, address: str, wei: int) -> None:
        """Gives `address` gas money (development chains only)."""

    def latest_timestamp(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def close(self) -> None:  # noqa: B027 - most backends hold nothing; overriding is optional
        """Releases what the backend holds (a node process, files)."""


class JsonRpcBackend(ChainBackend):
    """A backend that speaks JSON-RPC itself (a node across HTTP, the revm node in this
    process): requests, batches, answers and the development controls written once over
    `_send` and `_send_batch`."""

    @abstractmethod
    def _send(self, method: str, params: Any) -> dict[str, Any]:
        """One request's JSON-RPC answer; raises what the transport raises."""

    @abstractmethod
    def _send_batch(self, requests: Sequence[Request]) -> list[dict[str, Any]]:
        """A batch's answers, in the order of `requests`; raises what the transport raises."""

    def request(self, method: str, params: list[Any]) -> Any:
        try:
            response = self._send(method, params)
        except Exception as exc:  # a node that cannot be reached: refused, reset, timed out
            raise ChainError(f"{method} failed: {exc}") from exc
        if "error" in response:
            raise_for_error(method, response["error"])
        return response["result"]

    def batch_request(self, requests: Sequence[Request]) -> list[Any]:
        if not requests:
            return []
        try:
            responses = self._send_batch(requests)
        except Exception as exc:  # a node that stopped answering: timeouts, resets
            raise ChainError(f"batch of {len(requests)} requests failed: {exc}") from exc
        if not isinstance(responses, list) or len(responses) != len(requests):
            raise ChainError(f"batch of {len(requests)} requests failed: {responses}")
        out = []
        for (method, _), response in zip(requests, responses, strict=True):
            if "error" in response:
                raise_for_error(method, response["error"])
            out.append(response["result"])
        return out

    def answer(self, method: str, params: Any, request_id: Any) -> dict[str, Any]:
        try:
            response = dict(self._send(method, params))
        except Exception as exc:  # noqa: BLE001 - the node is unreachable or answered nonsense
            error = {"code": -32603, "message": f"the chain did not answer: {exc}"}
            return {"jsonrpc": "2.0", "id": request_id, "error": error}
        response["id"] = request_id
        response["jsonrpc"] = "2.0"
        return response

    def _call(self, method: str, *params: Any) -> Any:
        """`request` with the params as arguments: a node's other controls (`anvil_reorg`...)."""
        return self.request(method, list(params))

    @contextmanager
    def _controls(self) -> Iterator[None]:
        """Held across the requests of one control (the revm node takes its lock)."""
        yield

    def snapshot(self) -> Any:
        return self.request("evm_snapshot", [])

    def revert(self, snapshot: Any) -> None:
        if not self.request("evm_revert", [snapshot]):
            raise ChainError(f"evm_revert to {snapshot} refused")

    def travel_to(self, timestamp: int) -> None:
        with self._controls():
            self.request("evm_setNextBlockTimestamp", [timestamp])
            self.request("evm_mine", [])

    def mine(self, blocks: int = 1) -> None:
        for _ in range(blocks):
            self.request("evm_mine", [])


# The attribute of a backend's web3 provider that points back at the backend: code that holds
# only a `Web3` (the ledger client, the event reader) finds its port through it (`chain_of`).
PORT_ATTRIBUTE = "chain_backend"


def attach(backend: ChainBackend) -> None:
    """Marks `backend.w3`'s provider as served by `backend`."""
    setattr(backend.w3.provider, PORT_ATTRIBUTE, backend)


def attached(w3: Web3) -> ChainBackend | None:
    found = getattr(w3.provider, PORT_ATTRIBUTE, None)
    return found if isinstance(found, ChainBackend) else None
