"""The chain port: what every chain backend offers, and its embedded and JSON-RPC adapters.

Like eth-tester's `backends/base.py`, one small interface; the same behaviour suite runs
against each implementation.
"""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import subprocess
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from eth_account import Account
from eth_tester import EthereumTester, PyEVMBackend
from web3 import EthereumTesterProvider, HTTPProvider, Web3
from web3.types import Wei

from gateway.chain.embedded_store import PATH_VARIABLE
from gateway.core.config import REPO_ROOT
from gateway.core.errors import ChainError

# anvil's development accounts come from this public mnemonic; never funded on a real network.
ANVIL_MNEMONIC = "test test test test test test test test test test test junk"


def anvil_dev_keys(count: int = 10) -> tuple[str, ...]:
    Account.enable_unaudited_hdwallet_features()
    return tuple(
        Account.from_mnemonic(ANVIL_MNEMONIC, account_path=f"m/44'/60'/0'/0/{i}").key.to_0x_hex() for i in range(count)
    )


EMBEDDED_GAS_LIMIT = 60_000_000

# Which engine runs the embedded chain: "revm" (pyrevm, gateway/chain/revm_backend.py),
# "pyevm" (eth-tester over py-evm), or "auto": revm where pyrevm imports, py-evm elsewhere.
ENGINE_VARIABLE = "LOYALTY_CHAIN_ENGINE"
ENGINES = ("auto", "revm", "pyevm")


def embedded_engine(requested: str | None = None, path: Path | None = None) -> str:
    """The engine an embedded chain opens with: the one requested (else $LOYALTY_CHAIN_ENGINE,
    else auto). Auto keeps a chain file on the engine that wrote it."""
    choice = (requested or os.environ.get(ENGINE_VARIABLE) or "auto").strip().lower()
    if choice not in ENGINES:
        raise ChainError(f"unknown chain engine {choice!r}; choose one of {', '.join(ENGINES)}")
    if choice == "pyevm":
        return choice
    from gateway.chain.revm_store import ChainStore

    if path is not None and ChainStore.holds_pyevm_chain(path):
        if choice == "revm":
            raise ChainError(f"{path} holds a py-evm chain: open it with the py-evm engine ({ENGINE_VARIABLE}=pyevm)")
        return "pyevm"
    try:
        import pyrevm  # noqa: F401
    except ImportError as exc:
        if choice == "revm":
            raise ChainError(
                "the revm chain engine needs pyrevm (CPython 3.11/3.12 on x86_64 Linux or arm64 macOS)"
            ) from exc
        return "pyevm"
    return "revm"


class ChainBackend(ABC):
    """A chain the ledger runs on. Test controls raise on chains that lack them."""

    name: str
    w3: Web3

    @property
    def chain_id(self) -> int:
        return int(self.w3.eth.chain_id)

    @property
    @abstractmethod
    def dev_keys(self) -> list[str]:
        """Private keys funded on this chain for development; empty on a real network."""

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


class _LockedTesterProvider(EthereumTesterProvider):
    """eth-tester is not thread-safe; the gateway's threads take turns."""

    # Requests that only read: anything else may mine a block (eth-tester mines each
    # transaction at once) and so moves the head.
    _READS = ("eth_get", "eth_call", "eth_chainId", "eth_blockNumber", "eth_estimateGas", "eth_gasPrice")

    def __init__(self, tester: EthereumTester, head_timestamp: Callable[[], int]) -> None:
        super().__init__(tester)
        self._lock = threading.RLock()
        self._read_head_timestamp = head_timestamp
        self.head_timestamp = head_timestamp()  # what EmbeddedChain.latest_timestamp answers

    def make_request(self, method: Any, params: Any) -> Any:
        with self._lock:
            try:
                return super().make_request(method, params)
            finally:
                if not str(method).startswith(self._READS):
                    self.note_head()

    def note_head(self) -> None:
        """Re-reads the head's time (the caller holds the lock): after anything that may mine."""
        self.head_timestamp = self._read_head_timestamp()


class EmbeddedChain(ChainBackend):
    """py-evm in this process through eth-tester; one block per transaction.

    With `path`, the chain lives in that SQLite file and continues where it stopped.
    """

    name = "embedded"
    engine_name = "pyevm"

    def __new__(cls, path: Path | None = None, *args: Any, engine: str | None = None, **kwargs: Any) -> EmbeddedChain:
        if cls is EmbeddedChain and embedded_engine(engine, path) == "revm":
            from gateway.chain.revm_backend import RevmChain

            return super().__new__(RevmChain)
        return super().__new__(cls)

    def __init__(self, path: Path | None = None, *, engine: str | None = None) -> None:
        params = PyEVMBackend.generate_genesis_params(overrides={"gas_limit": EMBEDDED_GAS_LIMIT})
        self.path = path
        if path is None:
            self.backend = PyEVMBackend(genesis_parameters=params)
        else:
            # py-evm reads its store class from the environment; set it only while building.
            saved = {k: os.environ.get(k) for k in ("CHAIN_DB_BACKEND_CLASS", PATH_VARIABLE)}
            os.environ["CHAIN_DB_BACKEND_CLASS"] = "gateway.chain.embedded_store.SqliteAtomicDB"
            os.environ[PATH_VARIABLE] = str(path)
            try:
                # A re-opened chain writes its genesis again; the stored head stays canonical
                # because py-evm 0.12 scores post-merge chains by block number (tested).
                self.backend = PyEVMBackend(genesis_parameters=params)
            finally:
                for k, v in saved.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
        self.tester = EthereumTester(self.backend)
        self._provider = _LockedTesterProvider(
            self.tester, lambda: int(self.backend.chain.get_canonical_head().timestamp)
        )
        self.w3 = Web3(self._provider)

    @property
    def dev_keys(self) -> list[str]:
        return [k.to_hex() for k in self.backend.account_keys]

    def snapshot(self) -> Any:
        return self.tester.take_snapshot()

    def revert(self, snapshot: Any) -> None:
        with self._provider._lock:
            self.tester.revert_to_snapshot(snapshot)
            self._provider.note_head()

    def travel_to(self, timestamp: int) -> None:
        with self._provider._lock:
            self.tester.time_travel(timestamp)
            self._provider.note_head()

    def mine(self, blocks: int = 1) -> None:
        with self._provider._lock:
            self.tester.mine_blocks(blocks)
            self._provider.note_head()

    def latest_timestamp(self) -> int:
        # Every earn counts its deadline from this. Through web3 and eth-tester's serializers
        # it cost ~4 ms; it is now re-read from py-evm's head header after anything that may
        # mine, and read here without the lock: while the submitter's batch or its tier
        # refresh runs (seconds, in py-evm), the head is the block it was, and earns need not
        # wait for it.
        return self._provider.head_timestamp

    def close(self) -> None:
        db = self.backend.chain.chaindb.db
        if hasattr(db, "close"):
            db.close()

    def fund(self, address: str, wei: int) -> None:
        self.w3.eth.send_transaction({"from": self.tester.get_accounts()[-1], "to": address, "value": Wei(wei)})


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


class RpcChain(ChainBackend):
    """Any JSON-RPC endpoint. Snapshots and time travel work on development nodes (anvil)."""

    name = "rpc"

    def __init__(self, url: str, *, dev_keys: tuple[str, ...] = (), timeout: float = 30.0) -> None:
        self.url = url
        self.w3 = Web3(KeepAliveHTTPProvider(url, timeout=timeout))
        self._dev_keys = list(dev_keys)

    @property
    def dev_keys(self) -> list[str]:
        return self._dev_keys

    def _call(self, method: str, *params: Any) -> Any:
        response = self.w3.provider.make_request(method, list(params))  # type: ignore[arg-type]
        if "error" in response:
            raise ChainError(f"{method} failed: {response['error']}")
        return response.get("result")

    def snapshot(self) -> Any:
        return self._call("evm_snapshot")

    def revert(self, snapshot: Any) -> None:
        if not self._call("evm_revert", snapshot):
            raise ChainError(f"evm_revert to {snapshot} refused")

    def travel_to(self, timestamp: int) -> None:
        self._call("evm_setNextBlockTimestamp", timestamp)
        self._call("evm_mine")

    def mine(self, blocks: int = 1) -> None:
        for _ in range(blocks):
            self._call("evm_mine")

    def fund(self, address: str, wei: int) -> None:
        self._call("anvil_setBalance", address, hex(wei))


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
