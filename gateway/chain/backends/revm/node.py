"""The revm node's JSON-RPC methods: a development node in this process, answering
requests as anvil would (`eth_*`, `net_*`, `web3_*`, and the `evm_*` controls)."""

from __future__ import annotations

from typing import Any

from gateway.chain.backends.revm.engine import Outcome
from gateway.chain.backends.revm.state import NodeState
from gateway.chain.backends.revm.store import ZERO32, AccountState
from gateway.chain.backends.revm.tx import RpcError, _addr, _hex_addr, decode_transaction
from gateway.chain.jsonrpc import data_bytes, param_quantity, to_data, to_quantity


class RevmNode(NodeState):
    """A one-process development node over `RevmEngine`, persisted in a `ChainStore`."""

    @staticmethod
    def _revert_error(out: Outcome) -> RpcError:
        if out.output:
            return RpcError(3, "execution reverted", to_data(out.output))
        return RpcError(3, "execution reverted", "0x")

    def eth_call(self, call: dict[str, Any], tag: Any = "latest") -> str:
        out = self._run_call(call, tag)
        if not out.success:
            raise self._revert_error(out)
        return to_data(out.output)

    def eth_estimateGas(self, call: dict[str, Any], tag: Any = "pending") -> str:  # noqa: N802 - JSON-RPC name
        cap = param_quantity(call.get("gas")) or self.gas_limit
        out = self._run_call(call, tag, cap)
        if not out.success:
            if out.output or out.gas_used < cap:
                raise self._revert_error(out)
            raise RpcError(-32000, f"gas required exceeds allowance ({cap})")
        low = out.gas_used + out.gas_refunded  # spent before the refund: the least that can work
        if self._run_call(call, tag, low).success:
            return to_quantity(low)
        high = cap
        while high - low > 1_000:  # the first failing bound is rarely far off; stop within 1,000 gas
            mid = (low + high) // 2
            if self._run_call(call, tag, mid).success:
                high = mid
            else:
                low = mid
        return to_quantity(high)

    # ------------------------------------------------------------ JSON-RPC methods

    def web3_clientVersion(self) -> str:  # noqa: N802
        return "loyalty-embedded-revm/pyrevm-0.3.7"

    def net_version(self) -> str:
        return str(self.chain_id)

    def net_listening(self) -> bool:
        return True

    def eth_chainId(self) -> str:  # noqa: N802
        return to_quantity(self.chain_id)

    def eth_blockNumber(self) -> str:  # noqa: N802
        return to_quantity(self.head)

    def eth_syncing(self) -> bool:
        return False

    def eth_mining(self) -> bool:
        return True

    def eth_gasPrice(self) -> str:  # noqa: N802
        return to_quantity(self._next_block_fee() + 10**9)

    def eth_maxPriorityFeePerGas(self) -> str:  # noqa: N802
        return to_quantity(10**9)

    def eth_accounts(self) -> list[str]:
        return [_hex_addr(a) for a in self._dev_accounts]

    def _account_at(self, address: Any, tag: Any) -> AccountState:
        number = self._block_number(tag)
        raw = _addr(address)
        if number is None or number == self.head:
            return self._account(raw)
        return self.store.account_at(raw, number)

    def eth_getBalance(self, address: Any, tag: Any = "latest") -> str:  # noqa: N802
        return to_quantity(self._account_at(address, tag).balance)

    def eth_getTransactionCount(self, address: Any, tag: Any = "latest") -> str:  # noqa: N802
        return to_quantity(self._account_at(address, tag).nonce)

    def eth_getCode(self, address: Any, tag: Any = "latest") -> str:  # noqa: N802
        code_hash = self._account_at(address, tag).code_hash
        if code_hash is None:
            return "0x"
        return to_data(self._codes.get(code_hash) or self.store.code(code_hash))

    def eth_getStorageAt(self, address: Any, slot: Any, tag: Any = "latest") -> str:  # noqa: N802
        number = self._block_number(tag)
        key = param_quantity(slot).to_bytes(32, "big")
        return to_data(self.store.slot_at(_addr(address), key, None if number == self.head else number))

    def _block(self, number: int | None, full: bool) -> dict[str, Any] | None:
        if number is None:
            return None
        header = self.store.header(number)
        if header is None:
            return None
        txs = self.store.block_txs(number)
        header["transactions"] = txs if full else [t["hash"] for t in txs]
        return header

    def eth_getBlockByNumber(self, tag: Any, full: bool = False) -> dict[str, Any] | None:  # noqa: N802
        if tag == "pending":
            tag = "latest"
        try:
            number = self._block_number(tag)
        except RpcError:
            return None
        return self._block(number, bool(full))

    def eth_getBlockByHash(self, block_hash: Any, full: bool = False) -> dict[str, Any] | None:  # noqa: N802
        return self._block(self.store.block_number_of(data_bytes(block_hash)), bool(full))

    def eth_getTransactionByHash(self, tx_hash: Any) -> dict[str, Any] | None:  # noqa: N802
        found = self.store.tx(data_bytes(tx_hash))
        return None if found is None else found[0]

    def _log_json(self, row: tuple[int, int, int, bytes, bytes, bytes, bytes], block_hash: str) -> dict[str, Any]:
        number, log_index, tx_index, tx_hash, address, topics, data = row
        return {
            "address": _hex_addr(address),
            "topics": [to_data(topics[i : i + 32]) for i in range(0, len(topics), 32)],
            "data": to_data(data),
            "blockNumber": to_quantity(number),
            "blockHash": block_hash,
            "transactionHash": to_data(tx_hash),
            "transactionIndex": to_quantity(tx_index),
            "logIndex": to_quantity(log_index),
            "removed": False,
        }

    def eth_getTransactionReceipt(self, tx_hash: Any) -> dict[str, Any] | None:  # noqa: N802
        found = self.store.tx(data_bytes(tx_hash))
        if found is None:
            return None
        _, receipt, number = found
        rows = self.store.logs(number, number, tx_hash=data_bytes(tx_hash))
        receipt["logs"] = [self._log_json(r, receipt["blockHash"]) for r in rows]
        return receipt

    def eth_getLogs(self, query: dict[str, Any]) -> list[dict[str, Any]]:  # noqa: N802
        if query.get("blockHash"):
            number = self.store.block_number_of(data_bytes(query["blockHash"]))
            if number is None:
                raise RpcError(-32001, f"block {query['blockHash']} not found")
            start = end = number
        else:
            start = self._block_number(query.get("fromBlock", "latest")) or 0
            end_ = self._block_number(query.get("toBlock", "latest"))
            end = self.head if end_ is None else end_
        address = query.get("address")
        addresses = None
        if address is not None:
            addresses = [_addr(a) for a in (address if isinstance(address, list) else [address])]
        topics = list(query.get("topics") or [])
        first = topics[0] if topics else None
        topic0 = None
        if first is not None:
            topic0 = [data_bytes(t) for t in (first if isinstance(first, list) else [first])]
        rows = self.store.logs(start, end, addresses, topic0)
        wanted = [
            None if t is None else {data_bytes(x) for x in (t if isinstance(t, list) else [t])} for t in topics[1:]
        ]
        hashes: dict[int, str] = {}
        out = []
        for row in rows:
            row_topics = row[5]
            if any(
                w is not None and (len(row_topics) < 32 * (i + 2) or row_topics[32 * (i + 1) : 32 * (i + 2)] not in w)
                for i, w in enumerate(wanted)
            ):
                continue
            number = row[0]
            if number not in hashes:
                header = self.store.header(number)
                hashes[number] = header["hash"] if header else to_data(ZERO32)
            out.append(self._log_json(row, hashes[number]))
        return out

    def eth_sendRawTransaction(self, raw: Any) -> str:  # noqa: N802
        tx = decode_transaction(data_bytes(raw))
        if self.store.tx(tx.hash) is not None:
            raise RpcError(-32000, "already known")
        self._mine_tx(tx)
        return to_data(tx.hash)

    def eth_sendTransaction(self, call: dict[str, Any]) -> str:  # noqa: N802
        """Signs with a development account's key (only those) and sends."""
        from eth_account import Account

        sender = _addr(call.get("from"))
        key = self._dev_accounts.get(sender)
        if key is None:
            raise RpcError(-32000, f"{_hex_addr(sender)} is not a development account of this chain")
        base_fee = self._next_block_fee()
        tx: dict[str, Any] = {
            "chainId": self.chain_id,
            "nonce": param_quantity(call["nonce"]) if call.get("nonce") is not None else self._account(sender).nonce,
            "value": param_quantity(call.get("value")),
            "data": to_data(data_bytes(call.get("data") or call.get("input"))),
            "maxPriorityFeePerGas": param_quantity(call.get("maxPriorityFeePerGas") or 10**9),
            "maxFeePerGas": param_quantity(call.get("maxFeePerGas") or 2 * base_fee + 10**9),
        }
        if call.get("to"):
            tx["to"] = _hex_addr(_addr(call["to"]))
        tx["gas"] = param_quantity(call.get("gas")) or param_quantity(
            self.eth_estimateGas({**call, "from": _hex_addr(sender)}, "pending")
        )
        signed = Account.sign_transaction(tx, key)
        return self.eth_sendRawTransaction(bytes(signed.raw_transaction))

    # development controls

    def evm_mine(self, timestamp: Any = None) -> str:
        self._mine_empty(param_quantity(timestamp) if timestamp is not None else None)
        return "0x0"

    def evm_setNextBlockTimestamp(self, timestamp: Any) -> None:  # noqa: N802
        ts = param_quantity(timestamp)
        if ts <= self.head_timestamp:
            raise RpcError(-32000, f"timestamp {ts} not after the head's {self.head_timestamp}")
        self._next_timestamp = ts

    def evm_increaseTime(self, seconds: Any) -> str:  # noqa: N802
        self._next_timestamp = self._pending_timestamp() + param_quantity(seconds)
        return to_quantity(param_quantity(seconds))

    def evm_snapshot(self) -> str:
        snapshot_id = len(self._snapshots) + 1
        self._snapshots[snapshot_id] = self.head
        return to_quantity(snapshot_id)

    def evm_revert(self, snapshot_id: Any) -> bool:
        number = self._snapshots.get(param_quantity(snapshot_id))
        if number is None or number > self.head:
            return False
        accounts, storage = self.store.undo_after(number)
        for address, state in accounts.items():
            if state is None:
                self._accounts.pop(address, None)
                self.engine.put_account(address, 0, 0, None)
            else:
                if state.code_hash and state.code_hash not in self._codes:
                    self._codes[state.code_hash] = self.store.code(state.code_hash)
                self._set_account(address, state)
        for (address, slot), value in storage.items():
            self.engine.put_slot(address, slot, value)
        # Like anvil: a snapshot is used up by its revert, and so are the ones taken after it.
        self._snapshots = {k: v for k, v in self._snapshots.items() if k < param_quantity(snapshot_id)}
        header = self.store.header(number)
        assert header is not None
        self._next_timestamp = None
        self._note_head(header)
        return True

    # ------------------------------------------------------------ dispatch

    def request(self, method: str, params: Any = None, request_id: Any = 0) -> dict[str, Any]:
        """Answers one JSON-RPC request (as a dict, not yet JSON text)."""
        handler = getattr(self, method, None) if "_" in method and not method.startswith("_") else None
        if handler is None or method.split("_", 1)[0] not in ("eth", "net", "web3", "evm"):
            return {"jsonrpc": "2.0", "id": request_id, "error": {"code": -32601, "message": f"{method} not found"}}
        if params is None:
            params = []
        try:
            with self.lock:
                result = handler(**params) if isinstance(params, dict) else handler(*params)
        except RpcError as exc:
            return {"jsonrpc": "2.0", "id": request_id, "error": exc.as_json()}
        except (TypeError, ValueError, KeyError) as exc:
            return {"jsonrpc": "2.0", "id": request_id, "error": {"code": -32602, "message": f"invalid params: {exc}"}}
        except Exception as exc:  # noqa: BLE001 - a node answers every request, with an error if need be
            return {
                "jsonrpc": "2.0",
                "id": request_id,
                "error": {"code": -32603, "message": f"internal error: {exc!r}"},
            }
        return {"jsonrpc": "2.0", "id": request_id, "result": result}
