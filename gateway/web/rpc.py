"""`POST /rpc`: the chain's read-only JSON-RPC endpoint (SPEC section 6), no key needed.

Members check balances on-chain and auditors verify with only an RPC endpoint: any Ethereum
client (web3.py, Foundry's cast, a wallet) can point at `<gateway>/rpc`. Reads only; what
is served and refused is in `gateway.chain.rpc_readonly`.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict

from gateway.chain.backends import ChainBackend
from gateway.chain.rpc_readonly import handle

router = APIRouter()

MAX_BODY_BYTES = 1_000_000


def _chain(request: Request) -> ChainBackend:
    chain: ChainBackend = request.app.state.runtime.chain
    return chain


_JSONRPC_ANSWER = {
    "description": "a JSON-RPC 2.0 response (or an array of them for a batch request)",
    "content": {
        "application/json": {
            "schema": {
                "oneOf": [
                    {"$ref": "#/components/schemas/JsonRpcResponse"},
                    {"type": "array", "items": {"$ref": "#/components/schemas/JsonRpcResponse"}},
                ]
            }
        }
    },
}


class JsonRpcResponse(BaseModel):
    """One JSON-RPC 2.0 answer: `result`, or `error` with a code and message."""

    model_config = ConfigDict(extra="allow")
    jsonrpc: str
    id: Any = None
    result: Any = None
    error: dict[str, Any] | None = None


@router.post(
    "/rpc",
    include_in_schema=True,
    summary="Read-only JSON-RPC of the ledger's chain",
    response_model=JsonRpcResponse | list[JsonRpcResponse],
    responses={200: _JSONRPC_ANSWER},
)
async def rpc(request: Request) -> Response:
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        return JSONResponse(_parse_error(f"request over {MAX_BODY_BYTES} bytes"), status_code=413)
    try:
        payload: Any = json.loads(body)
    except ValueError as exc:
        return JSONResponse(_parse_error(f"not JSON: {exc}"))
    # The chain answers synchronously (and an embedded one takes its lock): off the event loop.
    answer = await run_in_threadpool(handle, payload, _chain(request))
    if answer is None:
        return Response(status_code=204)
    return JSONResponse(answer)


def _parse_error(message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": message}}
