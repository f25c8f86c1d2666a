"""Reading the ledger's history: paged eth_getLogs, decoded events, block headers in batches.

What the audit, the settlement statement and the reindex read from the chain; nothing here
knows what the events mean.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from hexbytes import HexBytes
from web3 import EthereumTesterProvider, Web3

from gateway.chain.ledger import Ledger, LedgerEvent, rpc
from gateway.errors import ChainError

PAGE_BLOCKS = 2_000
HEADER_BATCH = 500


def get_logs(
    w3: Web3,
    address: str,
    from_block: int,
    to_block: int,
    *,
    topics: list[str | None] | None = None,
    page: int = PAGE_BLOCKS,
) -> list[Any]:
    """Raw logs of `address` in [from_block, to_block], in pages of `page` blocks."""
    logs: list[Any] = []
    start = from_block
    while start <= to_block:
        end = min(start + page - 1, to_block)
        query: dict[str, Any] = {"address": address, "fromBlock": start, "toBlock": end}
        if topics is not None:
            query["topics"] = topics
        if isinstance(w3.provider, EthereumTesterProvider):
            # eth-tester wants web3's formatting of the filter; a real node takes it raw.
            logs += w3.eth.get_logs(query)  # type: ignore[arg-type]
        else:
            logs += rpc(w3, "eth_getLogs", [{**query, "fromBlock": hex(start), "toBlock": hex(end)}])
        start = end + 1
    return logs


def fetch_events(
    w3: Web3, ledger: Ledger, from_block: int, to_block: int, progress: Callable[[int, int], None] | None = None
) -> list[LedgerEvent]:
    """Every event of the ledger in [from_block, to_block], decoded, in chain order."""
    events: list[LedgerEvent] = []
    start = from_block
    while start <= to_block:
        end = min(start + PAGE_BLOCKS - 1, to_block)
        logs = get_logs(w3, ledger.address, start, end)
        events += [e for log in logs if (e := ledger.decode_log(log)) is not None]
        if progress:
            progress(end - from_block + 1, to_block - from_block + 1)
        start = end + 1
    events.sort(key=lambda e: (e.block_number, e.log_index))
    return events


def _int(value: Any) -> int:
    return int(value, 16) if isinstance(value, str) else int(value)


def block_headers(w3: Web3, numbers: Iterable[int]) -> dict[int, tuple[int, str]]:
    """(timestamp, hash) of each block number; in JSON-RPC batches on a node."""
    wanted = sorted(set(numbers))
    out: dict[int, tuple[int, str]] = {}
    if isinstance(w3.provider, EthereumTesterProvider):
        for number in wanted:
            block = rpc(w3, "eth_getBlockByNumber", [hex(number), False])
            out[number] = (_int(block["timestamp"]), HexBytes(block["hash"]).to_0x_hex())
        return out
    for i in range(0, len(wanted), HEADER_BATCH):
        chunk = wanted[i : i + HEADER_BATCH]
        responses = w3.provider.make_batch_request(  # type: ignore[attr-defined]
            [("eth_getBlockByNumber", [hex(n), False]) for n in chunk]
        )
        if not isinstance(responses, list):
            raise ChainError(f"eth_getBlockByNumber batch failed: {responses}")
        for response in responses:
            block = response.get("result")
            if not block:
                raise ChainError(f"eth_getBlockByNumber failed: {response.get('error', 'no block')}")
            out[_int(block["number"])] = (_int(block["timestamp"]), HexBytes(block["hash"]).to_0x_hex())
    return out


def timestamps(w3: Web3, numbers: Iterable[int]) -> dict[int, int]:
    return {n: ts for n, (ts, _) in block_headers(w3, numbers).items()}
