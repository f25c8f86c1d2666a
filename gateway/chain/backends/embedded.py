"""The embedded chain: which engine runs it, and the py-evm engine through eth-tester.

py-evm runs in this process behind web3's `EthereumTesterProvider`: its answers come back
formatted by web3 into Python values (ints, `HexBytes`), its failures as Python exceptions.
This adapter is the only place that knows it: it turns those exceptions into the port's
typed errors, and its answers into JSON-RPC's form for the read-only endpoint.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from eth_tester import EthereumTester, PyEVMBackend
from eth_utils import keccak, to_checksum_address
from hexbytes import HexBytes
from web3 import EthereumTesterProvider, Web3
from web3.exceptions import ContractCustomError, ContractLogicError
from web3.types import Wei

from gateway.chain.backends.base import EMBEDDED_GAS_LIMIT, ChainBackend, Request, attach
from gateway.chain.backends.embedded_store import PATH_VARIABLE
from gateway.chain.backends.errors import Reverted, classify, revert_data, tester_revert_data
from gateway.core.errors import ChainError, ChainFault

# Which engine runs the embedded chain: "revm" (pyrevm, gateway/chain/backends/revm/),
# "pyevm" (eth-tester over py-evm), or "auto": revm where pyrevm imports, py-evm elsewhere.
ENGINE_VARIABLE = "LOYALTY_CHAIN_ENGINE"
ENGINES = ("auto", "revm", "pyevm")
# What an `eth_call` or `eth_estimateGas` may carry; eth-tester refuses anything else.
CALL_KEYS = frozenset(
    {"from", "to", "gas", "gasPrice", "maxFeePerGas", "maxPriorityFeePerGas", "value", "data", "nonce"}
)
INVALID_PARAMS, INTERNAL = -32602, -32603


def embedded_engine(requested: str | None = None, path: Path | None = None) -> str:
    """The engine an embedded chain opens with: the one requested (else $LOYALTY_CHAIN_ENGINE,
    else auto). Auto keeps a chain file on the engine that wrote it."""
    choice = (requested or os.environ.get(ENGINE_VARIABLE) or "auto").strip().lower()
    if choice not in ENGINES:
        raise ChainError(f"unknown chain engine {choice!r}; choose one of {', '.join(ENGINES)}")
    if choice == "pyevm":
        return choice
    from gateway.chain.backends.revm.store import ChainStore

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
    `EmbeddedChain(...)` opens the revm engine instead where `embedded_engine` chooses it.
    """

    name = "embedded"
    engine_name = "pyevm"
    # eth-tester's answers are formatted by web3 and served one at a time under a lock:
    # fixed pages, read in turn.
    read_ahead = False

    def __new__(cls, path: Path | None = None, *args: Any, engine: str | None = None, **kwargs: Any) -> EmbeddedChain:
        if cls is EmbeddedChain and embedded_engine(engine, path) == "revm":
            from gateway.chain.backends.revm.chain import RevmChain

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
            os.environ["CHAIN_DB_BACKEND_CLASS"] = "gateway.chain.backends.embedded_store.SqliteAtomicDB"
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
        attach(self)

    @property
    def dev_keys(self) -> list[str]:
        return [k.to_hex() for k in self.backend.account_keys]

    # -------------------------------------------------------------- requests

    def request(self, method: str, params: list[Any]) -> Any:
        # eth-tester's raw answers are not JSON-RPC shaped; web3 formats them. It is
        # in-process, so web3's overhead is small beside py-evm's own time.
        try:
            if method == "eth_getLogs":  # the manager's raw request trips on web3's filter middleware
                return self.w3.eth.get_logs(_log_filter(params[0]))  # type: ignore[arg-type]
            return self.w3.manager.request_blocking(method, params)  # type: ignore[arg-type]
        except (ContractCustomError, ContractLogicError) as exc:
            data = revert_data(exc.data) if isinstance(exc.data, str) else None
            raise Reverted(f"{method} reverted: {exc}", data=data) from exc
        except Exception as exc:
            raise _fault(method, exc) from exc

    def batch_request(self, requests: Sequence[Request]) -> list[Any]:
        return [self.request(method, params) for method, params in requests]  # in-process: one by one

    def answer(self, method: str, params: Any, request_id: Any) -> dict[str, Any]:
        """web3 formats the request and the answer; the answer goes back in JSON-RPC form."""
        if method == "net_version":  # eth-tester says 1 whatever its chain id; nodes answer the chain's
            return {"jsonrpc": "2.0", "id": request_id, "result": str(self.chain_id)}
        if method in ("eth_call", "eth_estimateGas") and params and isinstance(params[0], Mapping):
            # Newer clients (cast) send the calldata as `input`; eth-tester knows only `data`.
            call = {k: v for k, v in params[0].items() if k in CALL_KEYS}
            if "input" in params[0] and "data" not in call:
                call["data"] = params[0]["input"]
            if str(call.get("from", "")).lower() == "0x" + "00" * 20:
                # cast calls from the zero address, which holds the block rewards here: eth-tester
                # would charge it the gas of a call. Without a sender, it charges nobody.
                del call["from"]
            params = [call, *params[1:]]
        try:
            if method == "eth_getLogs":
                query = params[0]
                result = self.w3.eth.get_logs(_log_filter(query) if isinstance(query, Mapping) else query)  # type: ignore[arg-type]
            else:
                result = self.w3.manager.request_blocking(method, params)  # type: ignore[arg-type]
        except Exception as exc:  # noqa: BLE001 - reverts, unknown blocks, bad params: an error answer
            data = getattr(exc, "data", None)
            message = str(exc) or type(exc).__name__
            error: dict[str, Any]
            if data or isinstance(classify(method, message), Reverted):
                error = {"code": 3, "message": "execution reverted"}
                if isinstance(data, str):
                    error["data"] = data
            else:
                error = {"code": INVALID_PARAMS if isinstance(exc, (TypeError, ValueError)) else INTERNAL}
                error["message"] = message
            return {"jsonrpc": "2.0", "id": request_id, "error": error}
        answer = to_json_rpc(result)
        if method == "eth_getTransactionReceipt" and isinstance(answer, dict):
            # eth-tester's receipts lack the bloom that clients (cast) require.
            answer.setdefault("logsBloom", logs_bloom(answer.get("logs", [])))
            for log in answer.get("logs", []):
                log.setdefault("removed", False)
        return {"jsonrpc": "2.0", "id": request_id, "result": answer}

    # -------------------------------------------------------------- development controls

    def snapshot(self) -> Any:
        return self.tester.take_snapshot()

    def revert(self, snapshot: Any) -> None:
        with self._provider._lock:
            self.tester.revert_to_snapshot(snapshot)
            self._provider.note_head()

    def travel_to(self, timestamp: int) -> None:
        with self._provider._lock:
            # eth-tester sets the pending header a second early, for a mining step that adds
            # one; py-evm's post-merge mining adds none, so the block landed a second before
            # `timestamp` (tests/chain/test_port.py). Mined here at `timestamp` exactly.
            head = self._provider.head_timestamp
            if timestamp <= head:
                raise ChainError(f"timestamp {timestamp} not after the head's {head}")
            chain = self.backend.chain
            chain.header = chain.header.copy(timestamp=timestamp)
            self.tester.mine_blocks()
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


def _fault(method: str, exc: Exception) -> ChainFault:
    """The port's error for what eth-tester or py-evm raised: the revert data travel in the
    exception's `data`, its second argument, or (TransactionFailed) its text."""
    data = getattr(exc, "data", None) or (exc.args[1] if len(exc.args) > 1 else None)
    if data is None:
        data = tester_revert_data(str(exc))
    return classify(method, str(exc), data=data)


def _log_filter(query: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON-RPC log filter as web3's `get_logs` takes it for eth-tester: block numbers as
    ints, one checksummed address, no empty topic list."""
    out = dict(query)
    for key in ("fromBlock", "toBlock"):
        value = out.get(key)
        if isinstance(value, str) and value.startswith("0x"):
            out[key] = int(value, 16)
    address = out.get("address")
    if isinstance(address, list) and len(address) == 1:
        address = address[0]  # eth-tester takes one address as a string
    if isinstance(address, str):
        out["address"] = to_checksum_address(address)  # web3 refuses lower-case ones
    if not out.get("topics"):
        out.pop("topics", None)
    return out


def logs_bloom(logs: list[dict[str, Any]]) -> str:
    """The 2048-bit bloom filter (yellow paper, 4.3.1) of JSON-RPC logs."""
    bloom = 0
    for log in logs:
        for item in (log["address"], *log.get("topics", [])):
            digest = keccak(HexBytes(item))
            for i in (0, 2, 4):
                bloom |= 1 << (((digest[i] << 8) | digest[i + 1]) & 2047)
    return "0x" + bloom.to_bytes(256, "big").hex()


def to_json_rpc(value: Any) -> Any:
    """web3's Python values in JSON-RPC's form: ints as quantities, bytes as data."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return hex(value)
    if isinstance(value, (bytes, bytearray, HexBytes)):
        return "0x" + bytes(value).hex()
    if isinstance(value, Mapping):
        out = {k: to_json_rpc(v) for k, v in value.items()}
        if isinstance(value.get("logsBloom"), int):  # data, not a quantity: all 256 bytes
            out["logsBloom"] = "0x" + int(value["logsBloom"]).to_bytes(256, "big").hex()
        return out
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [to_json_rpc(v) for v in value]
    return value
