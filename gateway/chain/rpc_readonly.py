"""A read-only JSON-RPC endpoint over any chain backend: what wallets and auditors may ask.

`handle(payload, chain)` takes one parsed JSON-RPC request or a batch and returns the
answer to serialise (None when nothing is to be sent back: only notifications). Reads are
served; anything that writes (transactions, signing, a development node's controls) is
refused with a JSON-RPC error, as is any method not listed here.

The allowed requests go to the chain's port (`ChainBackend.answer`), which answers in
JSON-RPC form whatever the backend: the revm node and a JSON-RPC node (anvil, a real
network) answer so already; the py-evm adapter turns web3's Python values back into it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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
    return chain.answer(method, params, request_id)


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
