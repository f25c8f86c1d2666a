"""A JSON-RPC node as a chain backend: any endpoint over HTTP, and anvil started by us.

Snapshots, time travel and mining use the development methods (`evm_*`, `anvil_*`) that
anvil and Hardhat serve; a real network refuses them (`ChainError`).
"""

from __future__ import annotations

import http.client
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from eth_account import Account
from web3 import HTTPProvider, Web3

from gateway.chain.backends.base import EMBEDDED_GAS_LIMIT, JsonRpcBackend, Request, attach
from gateway.core.config import REPO_ROOT
from gateway.core.errors import ChainError

# anvil's development accounts come from this public mnemonic; never funded on a real network.
ANVIL_MNEMONIC = "test test test test test test test test test test test junk"


def anvil_dev_keys(count: int = 10) -> tuple[str, ...]:
    Account.enable_unaudited_hdwallet_features()
    return tuple(
        Account.from_mnemonic(ANVIL_MNEMONIC, account_path=f"m/44'/60'/0'/0/{i}").key.to_0x_hex() for i in range(count)
    )


class KeepAliveHTTPProvider(HTTPProvider):
    """web3's HTTPProvider, posting through http.client on one kept-alive connection per
    thread. Same JSON-RPC encoding and decoding; requests' session machinery cost several
    times more CPU than a local node's answer, and the submitter makes many small calls."""

    def __init__(self, url: str, *, timeout: float) -> None:
        super().__init__(url, request_kwargs={"timeout": timeout})
        parsed = urlsplit(url)
        self._https = parsed.scheme == "https"
        self._host, self._port = parsed.hostname or "127.0.0.1", parsed.port
        self._path = (parsed.path or "/") + (f"?{parsed.query}" if parsed.query else "")
        self._timeout = timeout
        self._local = threading.local()

    def _post(self, data: bytes) -> bytes:
        for attempt in (1, 2):
            conn = getattr(self._local, "conn", None)
            if conn is None:
                factory = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
                conn = self._local.conn = factory(self._host, self._port, timeout=self._timeout)
            try:
                conn.request("POST", self._path, body=data, headers={"Content-Type": "application/json"})
                response = conn.getresponse()
                body = response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # The node closed an idle kept-alive connection: once more on a new one (every
                # JSON-RPC call we make, a raw transaction included, is safe to repeat).
                conn.close()
                self._local.conn = None
                if attempt == 2:
                    raise
                continue
            except Exception:
                conn.close()  # a timeout leaves the connection in an unknown state
                self._local.conn = None
                raise
            if response.status >= 400 and not body.lstrip().startswith((b"{", b"[")):
                raise ConnectionError(f"HTTP {response.status} from {self.endpoint_uri}")
            return body
        raise AssertionError("unreachable")

    def _make_request(self, method: Any, request_data: bytes) -> bytes:
        return self._post(request_data)

    def make_batch_request(self, batch_requests: list[tuple[Any, Any]]) -> Any:
        response = self.decode_rpc_response(self._post(self.encode_batch_rpc_request(batch_requests)))
        if isinstance(response, list):
            response.sort(key=lambda r: r["id"])
        return response


class RpcChain(JsonRpcBackend):
    """Any JSON-RPC endpoint. Snapshots and time travel work on development nodes (anvil)."""

    name = "rpc"

    def __init__(self, url: str, *, dev_keys: tuple[str, ...] = (), timeout: float = 30.0) -> None:
        self.url = url
        self.w3 = Web3(KeepAliveHTTPProvider(url, timeout=timeout))
        attach(self)
        self._dev_keys = list(dev_keys)

    @classmethod
    def over(cls, w3: Web3) -> RpcChain:
        """The port over a `Web3` built elsewhere on any JSON-RPC provider."""
        chain = cls.__new__(cls)
        chain.url = str(getattr(w3.provider, "endpoint_uri", ""))
        chain.w3 = w3
        chain._dev_keys = []
        attach(chain)
        return chain

    @property
    def dev_keys(self) -> list[str]:
        return self._dev_keys

    def _send(self, method: str, params: Any) -> dict[str, Any]:
        return self.w3.provider.make_request(method, params)  # type: ignore[arg-type, return-value]

    def _send_batch(self, requests: Sequence[Request]) -> list[dict[str, Any]]:
        responses = self.w3.provider.make_batch_request(list(requests))  # type: ignore[attr-defined]
        if isinstance(responses, list):
            responses = sorted(responses, key=lambda r: r["id"])  # answers may come in any order
        return responses

    def fund(self, address: str, wei: int) -> None:
        self.request("anvil_setBalance", [address, hex(wei)])


def anvil_binary() -> Path:
    local = REPO_ROOT / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"
    if local.is_file():
        return local
    found = shutil.which("anvil")
    if found:
        return Path(found)
    raise ChainError("anvil not found: run `npm ci` (package @foundry-rs/anvil)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class AnvilNode(RpcChain):
    """An anvil process started (and stopped) by us, on a free local port."""

    name = "anvil"

    def __init__(self, *, port: int | None = None, extra_args: tuple[str, ...] = ()) -> None:
        self.port = port or free_port()
        self.process = subprocess.Popen(
            [
                str(anvil_binary()),
                "--port",
                str(self.port),
                "--host",
                "127.0.0.1",
                "--gas-limit",
                str(EMBEDDED_GAS_LIMIT),
                "--silent",
                *extra_args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        super().__init__(f"http://127.0.0.1:{self.port}", dev_keys=anvil_dev_keys())
        deadline = time.monotonic() + 30
        while True:
            try:
                if self.w3.is_connected():
                    break
            except Exception:  # noqa: BLE001 - any failure here just means "not up yet"
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise ChainError("anvil did not start")
            time.sleep(0.05)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
