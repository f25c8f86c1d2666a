"""The revm node's chain: state in the engine, blocks, mining, history and calls.

`NodeState` keeps everything in a `ChainStore` (SQLite, one transaction per block): one
block per transaction (like eth-tester and anvil's automine), EIP-1559 base fees, receipts,
logs, calls at past blocks. `RevmNode` (node.py) answers JSON-RPC over it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import rlp
from eth_keys import keys
from eth_utils import keccak

from gateway.chain.backends.base import EMBEDDED_GAS_LIMIT
from gateway.chain.backends.revm.engine import COINBASE, InvalidTransaction, Outcome, RevmEngine
from gateway.chain.backends.revm.store import AccountState, BlockWrite, ChainStore
from gateway.chain.backends.revm.tx import RpcError, Tx, _addr, _hex_addr
from gateway.chain.jsonrpc import data_bytes, param_quantity, to_data, to_quantity

EMBEDDED_CHAIN_ID = 131277322940537  # eth-tester's, so both engines are the same network
GENESIS_BASE_FEE = 10**9
DEV_BALANCE = 10**6 * 10**18  # a million ether each, as eth-tester gives
EMPTY_TRIE_ROOT = bytes.fromhex("56e81f171bcc55a6ff8345e692c0f86e5b48e01b996cadc001622fb5e363b421")
EMPTY_UNCLES = bytes.fromhex("1dcc4de8dec75d7aab85b567b6ccd41ad312451b948a7413f0a142fd40d49347")
MAX_HISTORY_CHANGES = 500_000  # a call further back than this many state changes is refused


def eth_tester_keys(count: int = 10) -> list[str]:
    """eth-tester's development keys (0x...01 to 0x...0a): the same accounts on both engines."""
    return ["0x" + i.to_bytes(32, "big").hex() for i in range(1, count + 1)]


def _bloom(logs: list[tuple[bytes, list[bytes], bytes]], cache: dict[bytes, int]) -> bytes:
    bloom = 0
    for address, topics, _ in logs:
        for item in (address, *topics):
            bits = cache.get(item)
            if bits is None:
                h = keccak(item)
                bits = 0
                for i in (0, 2, 4):
                    bits |= 1 << (((h[i] << 8) | h[i + 1]) & 2047)
                if len(cache) > 100_000:
                    cache.clear()
                cache[item] = bits
            bloom |= bits
    return bloom.to_bytes(256, "big")


def _next_base_fee(base_fee: int, gas_used: int, gas_limit: int) -> int:
    """EIP-1559."""
    target = gas_limit // 2
    if gas_used == target:
        return base_fee
    if gas_used > target:
        return base_fee + max(1, base_fee * (gas_used - target) // target // 8)
    return max(0, base_fee - base_fee * (target - gas_used) // target // 8)


class NodeState:
    """The chain of a `RevmNode`: its engine, store, head and development state. Not
    thread-safe: the node's JSON-RPC dispatch holds `lock`."""

    def __init__(
        self,
        path: Path | None = None,
        *,
        chain_id: int = EMBEDDED_CHAIN_ID,
        dev_keys: list[str] | None = None,
        gas_limit: int = EMBEDDED_GAS_LIMIT,
    ) -> None:
        self.lock = threading.RLock()
        self.store = ChainStore(path)
        stored_chain = self.store.meta("chain_id")
        if stored_chain is not None:
            chain_id = int(stored_chain)
        self.chain_id = chain_id
        self.gas_limit = gas_limit
        self.engine = RevmEngine(chain_id=chain_id, gas_limit=gas_limit)
        self.dev_keys = dev_keys if dev_keys is not None else eth_tester_keys()
        stored_keys = self.store.meta("dev_keys")
        if stored_keys is not None:
            self.dev_keys = json.loads(stored_keys)
        self._dev_accounts = {
            keys.PrivateKey(data_bytes(k)).public_key.to_canonical_address(): k for k in self.dev_keys
        }
        self._accounts: dict[bytes, AccountState] = {}
        self._codes: dict[bytes, bytes] = {}
        self._bloom_cache: dict[bytes, int] = {}
        self._next_timestamp: int | None = None
        self._snapshots: dict[int, int] = {}
        head = self.store.head()
        if head is None:
            self.store.set_meta("chain_id", str(chain_id))
            self.store.set_meta("dev_keys", json.dumps(self.dev_keys))
            self._genesis()
        else:
            self._load()

    # ------------------------------------------------------------ start

    def _genesis(self) -> None:
        accounts = {a: (AccountState(DEV_BALANCE, 0, None), None) for a in self._dev_accounts}
        header = self._header(0, b"\x00" * 32, int(time.time()), GENESIS_BASE_FEE, 0, [], bytes(256))
        block = BlockWrite(0, data_bytes(header["hash"]), header, accounts=accounts)  # type: ignore[arg-type]
        self.store.write_block(block)
        for address, (state, _) in accounts.items():
            self._set_account(address, state)
        self._note_head(header)

    def _load(self) -> None:
        for kind, item in self.store.load_state():
            if kind == "account":
                address, state, code = item
                if code:
                    self._codes[state.code_hash] = code
                self._set_account(address, state)
            else:
                self.engine.put_slot(*item)
        head = self.store.head()
        assert head is not None
        header = self.store.header(head)
        assert header is not None
        self._note_head(header)

    def _note_head(self, header: dict[str, Any]) -> None:
        self.head = param_quantity(header["number"])
        self.head_header = header
        self.head_timestamp = param_quantity(header["timestamp"])
        self.base_fee = param_quantity(header["baseFeePerGas"])

    def close(self) -> None:
        with self.lock:
            self.store.close()

    # ------------------------------------------------------------ state in the engine

    def _set_account(self, address: bytes, state: AccountState) -> None:
        self._accounts[address] = state
        code = self._codes.get(state.code_hash) if state.code_hash else None
        self.engine.put_account(address, state.balance, state.nonce, code)

    def _account(self, address: bytes) -> AccountState:
        return self._accounts.get(address) or AccountState()

    # ------------------------------------------------------------ blocks

    def _pending_timestamp(self) -> int:
        if self._next_timestamp is not None:
            return self._next_timestamp
        return max(int(time.time()), self.head_timestamp + 1)

    def _next_block_fee(self) -> int:
        return _next_base_fee(self.base_fee, param_quantity(self.head_header["gasUsed"]), self.gas_limit)

    def _header(
        self,
        number: int,
        parent: bytes,
        timestamp: int,
        base_fee: int,
        gas_used: int,
        tx_hashes: list[bytes],
        bloom: bytes,
    ) -> dict[str, Any]:
        block_hash = keccak(rlp.encode([parent, number, timestamp, base_fee, gas_used, b"".join(tx_hashes), bloom]))
        return {
            "number": to_quantity(number),
            "hash": to_data(block_hash),
            "parentHash": to_data(parent),
            "nonce": "0x0000000000000000",
            "mixHash": to_data(keccak(number.to_bytes(32, "big"))),
            "sha3Uncles": to_data(EMPTY_UNCLES),
            "logsBloom": to_data(bloom),
            "transactionsRoot": to_data(b"\x00" * 32 if tx_hashes else EMPTY_TRIE_ROOT),
            "stateRoot": to_data(b"\x00" * 32),
            "receiptsRoot": to_data(b"\x00" * 32 if tx_hashes else EMPTY_TRIE_ROOT),
            "miner": _hex_addr(COINBASE),
            "difficulty": "0x0",
            "totalDifficulty": "0x0",
            "extraData": "0x",
            "size": to_quantity(600 + 32 * len(tx_hashes)),
            "gasLimit": to_quantity(self.gas_limit),
            "gasUsed": to_quantity(gas_used),
            "timestamp": to_quantity(timestamp),
            "baseFeePerGas": to_quantity(base_fee),
            "withdrawals": [],
            "withdrawalsRoot": to_data(EMPTY_TRIE_ROOT),
            "blobGasUsed": "0x0",
            "excessBlobGas": "0x0",
            "parentBeaconBlockRoot": to_data(b"\x00" * 32),
            "uncles": [],
        }

    def _mine_empty(self, timestamp: int | None = None) -> None:
        number = self.head + 1
        ts = timestamp if timestamp is not None else self._pending_timestamp()
        self._next_timestamp = None
        header = self._header(
            number, data_bytes(self.head_header["hash"]), ts, self._next_block_fee(), 0, [], bytes(256)
        )
        self.store.write_block(BlockWrite(number, data_bytes(header["hash"]), header))
        self._note_head(header)

    def _mine_tx(self, tx: Tx) -> None:
        """Validates, runs and commits one transaction in a block of its own."""
        base_fee = self._next_block_fee()
        sender = self._account(tx.sender)
        if tx.chain_id is not None and tx.chain_id != self.chain_id:
            raise RpcError(-32000, f"invalid chain id {tx.chain_id}, this chain is {self.chain_id}")
        if tx.nonce < sender.nonce:
            raise RpcError(-32000, f"nonce too low: next nonce {sender.nonce}, tx nonce {tx.nonce}")
        if tx.nonce > sender.nonce:
            raise RpcError(-32000, f"nonce too high: next nonce {sender.nonce}, tx nonce {tx.nonce}")
        if tx.gas > self.gas_limit:
            raise RpcError(-32000, f"gas limit {tx.gas} above the block's {self.gas_limit}")
        if tx.max_fee < base_fee:
            raise RpcError(-32000, f"max fee per gas {tx.max_fee} below the base fee {base_fee}")
        if tx.max_priority_fee > tx.max_fee:
            raise RpcError(-32000, "max priority fee per gas higher than max fee per gas")
        if sender.balance < tx.gas * tx.max_fee + tx.value:
            raise RpcError(-32000, "insufficient funds for gas * price + value")
        if sender.code_hash is not None:
            raise RpcError(-32000, "sender is a contract")
        number, timestamp = self.head + 1, self._pending_timestamp()
        try:
            out = self.engine.run(
                caller=tx.sender,
                to=tx.to,
                data=tx.data,
                value=tx.value,
                gas=tx.gas,
                number=number,
                timestamp=timestamp,
                access_list=tx.access_list,
                keep=True,
            )
        except InvalidTransaction as exc:
            raise RpcError(-32000, f"invalid transaction: {exc}") from exc
        price = tx.effective_price(base_fee)

        # The state after the transaction: what revm wrote, then fees and the sender's nonce.
        new_accounts: dict[bytes, AccountState] = {}
        for address, (balance, nonce, code_hash, info) in out.accounts.items():
            if code_hash is not None and code_hash not in self._codes:
                self._codes[code_hash] = bytes(info.code)
            new_accounts[address] = AccountState(balance, nonce, code_hash)
        payer = new_accounts.get(tx.sender) or AccountState(sender.balance, sender.nonce, None)
        new_accounts[tx.sender] = AccountState(payer.balance - out.gas_used * price, tx.nonce + 1, None)
        tip = out.gas_used * (price - base_fee)
        if tip:
            miner = new_accounts.get(COINBASE) or self._account(COINBASE)
            new_accounts[COINBASE] = AccountState(miner.balance + tip, miner.nonce, miner.code_hash)
        changed = {a: s for a, s in new_accounts.items() if s != self._accounts.get(a, AccountState())}
        codes = {s.code_hash: self._codes[s.code_hash] for s in changed.values() if s.code_hash}

        logs = out.logs
        bloom = _bloom(logs, self._bloom_cache)
        header = self._header(
            number, data_bytes(self.head_header["hash"]), timestamp, base_fee, out.gas_used, [tx.hash], bloom
        )
        block_hash = data_bytes(header["hash"])
        receipt = {
            "transactionHash": to_data(tx.hash),
            "transactionIndex": "0x0",
            "blockHash": header["hash"],
            "blockNumber": header["number"],
            "from": _hex_addr(tx.sender),
            "to": _hex_addr(tx.to) if tx.to else None,
            "cumulativeGasUsed": to_quantity(out.gas_used),
            "gasUsed": to_quantity(out.gas_used),
            "effectiveGasPrice": to_quantity(price),
            "contractAddress": _hex_addr(out.created) if out.created and out.success else None,
            "logsBloom": to_data(bloom),
            "type": to_quantity(tx.type),
            "status": "0x1" if out.success else "0x0",
        }
        block = BlockWrite(
            number,
            block_hash,
            header,
            txs=[(tx.hash, 0, tx.as_json(block_hash, number, 0, base_fee), receipt)],
            logs=[(i, 0, tx.hash, a, topics, d) for i, (a, topics, d) in enumerate(logs)],
            accounts={a: (s, self._accounts.get(a)) for a, s in changed.items()},
            storage=out.storage,
            code=codes,
        )
        self.store.write_block(block)  # durable first; the engine follows
        self._next_timestamp = None
        for address, state in changed.items():
            self._set_account(address, state)
        for (address, slot), (new, _) in out.storage.items():
            self.engine.put_slot(address, slot, new)
        self._note_head(header)

    # ------------------------------------------------------------ history

    def _block_number(self, tag: Any, *, default_pending: bool = False) -> int | None:
        """A block tag as a number; None means the pending block (the state at the head)."""
        if isinstance(tag, dict):
            if "blockHash" in tag:
                number = self.store.block_number_of(data_bytes(tag["blockHash"]))
                if number is None:
                    raise RpcError(-32001, f"block {tag['blockHash']} not found")
                return number
            tag = tag.get("blockNumber", "latest")
        if tag is None:
            tag = "latest"
        if tag == "pending" or (default_pending and tag == "latest"):
            return None
        if tag in ("latest", "safe", "finalized"):
            return self.head
        if tag == "earliest":
            return 0
        number = param_quantity(tag)
        if number > self.head:
            raise RpcError(-32001, f"block {number} is not on this chain yet (head {self.head})")
        return number

    @contextmanager
    def _state_at(self, number: int | None) -> Iterator[tuple[int, int]]:
        """The engine's state at block `number` (None or the head: as it is) for the time of the
        body; yields the (number, timestamp) a call there runs with. Older state is rebuilt
        from what later blocks overwrote, then put back; too far back is refused."""
        if number is None:
            yield self.head + 1, self._pending_timestamp()
            return
        header = self.store.header(number)
        assert header is not None
        if number == self.head:
            yield number, param_quantity(header["timestamp"])
            return
        accounts, storage = self.store.changes_since(number)
        if len(accounts) + len(storage) > MAX_HISTORY_CHANGES:
            raise RpcError(
                -32000,
                f"block {number} is too far back for this embedded chain: {len(storage)} state changes since "
                f"(it answers up to {MAX_HISTORY_CHANGES}); query a later block",
            )
        try:
            for address, state in accounts.items():
                old = state or AccountState()
                code = self._codes.get(old.code_hash) if old.code_hash else None
                if old.code_hash and code is None:
                    code = self.store.code(old.code_hash)
                self.engine.put_account(address, old.balance, old.nonce, code)
            for (address, slot), value in storage.items():
                self.engine.put_slot(address, slot, value)
            yield number, param_quantity(header["timestamp"])
        finally:
            for address in accounts:
                self._set_account(address, self._account(address))
            for address, slot in storage:
                self.engine.put_slot(address, slot, self.store.slot_at(address, slot, None))

    # ------------------------------------------------------------ calls

    def _call_args(self, call: dict[str, Any]) -> dict[str, Any]:
        to = call.get("to")
        return {
            "caller": _addr(call["from"]) if call.get("from") else b"\x00" * 20,
            "to": _addr(to) if to else None,
            "data": data_bytes(call.get("data") or call.get("input")),
            "value": param_quantity(call.get("value")),
        }

    def _run_call(self, call: dict[str, Any], tag: Any, gas: int | None = None) -> Outcome:
        number = self._block_number(tag, default_pending=True)
        args = self._call_args(call)
        with self._state_at(number) as (block_number, timestamp):
            try:
                return self.engine.run(
                    **args,
                    gas=gas or param_quantity(call.get("gas")) or self.gas_limit,
                    number=block_number,
                    timestamp=timestamp,
                    keep=False,
                )
            except InvalidTransaction as exc:
                raise RpcError(-32000, str(exc)) from exc
