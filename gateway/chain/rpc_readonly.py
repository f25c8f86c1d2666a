"""A read-only JSON-RPC endpoint over any chain backend: what wallets and auditors may ask.

`handle(payload, chain)` takes one parsed JSON-RPC request or a batch and returns the
answer to serialise (None when nothing is to be sent back: only notifications). Reads are
served; anything that writes (transactions, signing, a development node's controls) is
refused with a JSON-RPC error, as is any method not listed here.

- On the revm embedded chain, its node answers in JSON-RPC form already.
- On the py-evm embedded chain, web3 formats eth-tester's answers into Python values;
  they are turned back into JSON-RPC's form (quantities and data as 0x-hex).
- On a JSON-RPC node (anvil, a real network), the allowed requests are passed through.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from eth_utils import keccak, to_checksum_address
from hexbytes import HexBytes
from web3 import EthereumTesterProvider

from gateway.chain.backends import ChainBackend

READS = frozenset(
    {
        "eth_chainId",
        "eth_blockNumber",
        "eth_call",
        "eth_estimateGas",
        "eth_getLogs",
        "eth_getBlockByNumber",
        "eth_getBlockByHash",
        "eth_getTransactionReceipt",
        "eth_getTransactionByHash",
        "eth_getBalance",
        "eth_getCode",
        "eth_getStorageAt",
        "eth_getTransactionCount",
        "eth_gasPrice",
        "eth_maxPriorityFeePerGas",
        "eth_syncing",
        "net_version",
        "net_listening",
        "web3_clientVersion",
    }
)
WRITE_PREFIXES = ("eth_send", "eth_sign", "personal_", "evm_", "anvil_", "hardhat_", "debug_", "miner_", "admin_")
WRITES = frozenset({"eth_submitWork", "eth_submitHashrate", "eth_newFilter", "eth_uninstallFilter"})
CALL_KEYS = frozenset(
    {"from", "to", "gas", "gasPrice", "maxFeePerGas", "maxPriorityFeePerGas", "value", "data", "nonce"}
)
MAX_LOG_BLOCKS = 10_000  # what public nodes commonly accept in one eth_getLogs
MAX_BATCH = 1_000

INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS, INTERNAL, LIMIT = -32600, -32601, -32602, -32603, -32005
READ_ONLY = -32601  # a refused write: "method not available" here, as public read-only nodes answer


def _error(request_id: Any, code: int, message: str, data: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "id": request_id, "error": error}


def handle(payload: Any, chain: ChainBackend) -> Any:
    """The answer to a request or a batch (None if there is nothing to answer)."""
    if isinstance(payload, list):
        if not payload:
            return _error(None, INVALID_REQUEST, "empty batch")
        if len(payload) > MAX_BATCH:
            return _error(None, LIMIT, f"batch of {len(payload)} requests; at most {MAX_BATCH}")
        answers = [a for a in (_one(item, chain) for item in payload) if a is not None]
        return answers or None
    return _one(payload, chain)


def _one(request: Any, chain: ChainBackend) -> dict[str, Any] | None:
    if not isinstance(request, Mapping) or not isinstance(request.get("method"), str):
        return _error(None, INVALID_REQUEST, "not a JSON-RPC request")
    notification = "id" not in request
    request_id = request.get("id")
    method: str = request["method"]
    params = request.get("params", [])
    if not isinstance(params, (list, Mapping)):
        answer = _error(request_id, INVALID_PARAMS, "params must be an array")
    elif method.startswith(WRITE_PREFIXES) or method in WRITES:
        answer = _error(request_id, READ_ONLY, f"{method} is not served: this endpoint is read-only")
    elif method not in READS:
        answer = _error(request_id, METHOD_NOT_FOUND, f"{method} is not served by this endpoint")
    else:
        answer = _read(chain, method, list(params) if isinstance(params, list) else params, request_id)
    return None if notification else answer


def _read(chain: ChainBackend, method: str, params: Any, request_id: Any) -> dict[str, Any]:
    if method == "eth_getLogs":
        refused = _log_range_refused(chain, params)
        if refused:
            return _error(request_id, LIMIT, refused)
    node = getattr(chain, "node", None)
    if node is not None:  # the revm chain: a node in this process
        return dict(node.request(method, params, request_id))
    provider = chain.w3.provider
    if isinstance(provider, EthereumTesterProvider):
        return _via_web3(chain, method, params, request_id)
    try:
        response = dict(provider.make_request(method, params))  # type: ignore[arg-type]
    except Exception as exc:  # noqa: BLE001 - the node is unreachable or answered nonsense
        return _error(request_id, INTERNAL, f"the chain did not answer: {exc}")
    response["id"] = request_id
    response["jsonrpc"] = "2.0"
    return response


def _log_range_refused(chain: ChainBackend, params: Any) -> str | None:
    query = params[0] if isinstance(params, list) and params else None
    if not isinstance(query, Mapping) or query.get("blockHash"):
        return None
    try:
        head = int(chain.w3.eth.block_number)
        start, end = (_block(query.get(k, "latest"), head) for k in ("fromBlock", "toBlock"))
    except (TypeError, ValueError):
        return None  # the chain answers malformed queries itself
    if end - start + 1 > MAX_LOG_BLOCKS:
        return f"eth_getLogs over {end - start + 1} blocks; at most {MAX_LOG_BLOCKS} per request"
    return None


def _block(tag: Any, head: int) -> int:
    if tag in (None, "latest", "pending", "safe", "finalized"):
        return head
    if tag == "earliest":
        return 0
    return int(tag, 16) if isinstance(tag, str) else int(tag)


def _via_web3(chain: ChainBackend, method: str, params: Any, request_id: Any) -> dict[str, Any]:
    """py-evm through eth-tester: web3 formats the request and the answer; JSON-RPC form back."""
    if method == "net_version":  # eth-tester says 1 whatever its chain id; nodes answer the chain's
        return {"jsonrpc": "2.0", "id": request_id, "result": str(chain.chain_id)}
    if method == "eth_getLogs" and params and isinstance(params[0], Mapping):
        query = dict(params[0])
        address = query.get("address")
        if isinstance(address, list) and len(address) == 1:
            address = address[0]  # eth-tester takes one address as a string
        if isinstance(address, str):
            query["address"] = to_checksum_address(address)  # web3 refuses lower-case ones
        if not query.get("topics"):
            query.pop("topics", None)
        params = [query, *params[1:]]
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
        if method == "eth_getLogs":  # the manager's raw request trips on web3's filter middleware
            result = chain.w3.eth.get_logs(params[0])
        else:
            result = chain.w3.manager.request_blocking(method, params)  # type: ignore[arg-type]
    except Exception as exc:  # noqa: BLE001 - reverts, unknown blocks, bad params: an error answer
        data = getattr(exc, "data", None)
        message = str(exc) or type(exc).__name__
        if "revert" in message.lower() or data:
            return _error(request_id, 3, "execution reverted", data if isinstance(data, str) else None)
        return _error(request_id, INVALID_PARAMS if isinstance(exc, (TypeError, ValueError)) else INTERNAL, message)
    answer = to_json_rpc(result)
    if method == "eth_getTransactionReceipt" and isinstance(answer, dict):
        # eth-tester's receipts lack the bloom that clients (cast) require.
        answer.setdefault("logsBloom", logs_bloom(answer.get("logs", [])))
        for log in answer.get("logs", []):
            log.setdefault("removed", False)
    return {"jsonrpc": "2.0", "id": request_id, "result": answer}


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
