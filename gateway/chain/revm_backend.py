"""The fast embedded chain: revm (through pyrevm) in this process, answering JSON-RPC itself.

Longer than 400 lines: one engine with its node and its JSON-RPC answers, kept together because
each layer's exactness (gas, block history, revert data) depends on the one below.

Three layers, each usable alone:

- `RevmEngine` runs transactions on pyrevm with exact gas. pyrevm keeps whatever a call
  touched warm for the next call (wrong gas, growing memory), so every transaction runs
  inside a journal checkpoint: its writes are read back (the journal lists the slots it
  wrote, `storage()` gives their values), the checkpoint is reverted, and the writes are
  put into pyrevm's database, which nothing keeps warm.
- `RevmNode` is a development node: one block per transaction (like eth-tester and anvil's
  automine), EIP-1559 base fees, receipts, logs, snapshots, time travel, calls at past
  blocks. It keeps everything in a `ChainStore` (SQLite, one transaction per block) and
  answers JSON-RPC requests as a node would, so the ledger client takes its lean JSON-RPC
  path instead of web3's eth-tester formatting.
- `RevmChain` is the `EmbeddedChain` port over a node; `RevmProvider` is the web3 provider.

What differs from a full node, on purpose: blocks carry no Merkle-Patricia roots
(`stateRoot`, `transactionsRoot`, `receiptsRoot` are zero); inside the EVM the BASEFEE and
GASPRICE opcodes read 0 (pyrevm fixes them) while fees are charged as EIP-1559 says;
Cancun rules (pyrevm 0.3.7 knows no later fork); no blob transactions.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import coincurve
import rlp
from eth_keys import keys
from eth_utils import keccak, to_checksum_address
from pyrevm import EVM, AccountInfo, BlockEnv, CfgEnv, Env, TxEnv
from web3 import Web3
from web3.providers.base import BaseProvider

from gateway.chain.backends import EMBEDDED_GAS_LIMIT, EmbeddedChain
from gateway.chain.revm_store import ZERO32, AccountState, BlockWrite, ChainStore

SPEC = "CANCUN"
EMBEDDED_CHAIN_ID = 131277322940537  # eth-tester's, so both engines are the same network
GENESIS_BASE_FEE = 10**9
DEV_BALANCE = 10**6 * 10**18  # a million ether each, as eth-tester gives
COINBASE = b"\x00" * 20
EMPTY_CODE_HASH = keccak(b"")
EMPTY_TRIE_ROOT = bytes.fromhex("56e81f171bcc55a6ff8345e692c0f86e5b48e01b996cadc001622fb5e363b421")
EMPTY_UNCLES = bytes.fromhex("1dcc4de8dec75d7aab85b567b6ccd41ad312451b948a7413f0a142fd40d49347")
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
MAX_HISTORY_CHANGES = 500_000  # a call further back than this many state changes is refused


def eth_tester_keys(count: int = 10) -> list[str]:
    """eth-tester's development keys (0x...01 to 0x...0a): the same accounts on both engines."""
    return ["0x" + i.to_bytes(32, "big").hex() for i in range(1, count + 1)]


class RpcError(Exception):
    """A JSON-RPC error answer."""

    def __init__(self, code: int, message: str, data: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.data = code, message, data

    def as_json(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


def _q(value: int) -> str:
    return hex(value)


def _d(value: bytes) -> str:
    return "0x" + value.hex()


def _int(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, str):
        return int(value, 16) if value.startswith(("0x", "0X")) else int(value)
    return int(value)


def _bytes(value: Any) -> bytes:
    if value is None:
        return b""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    text = str(value)
    return bytes.fromhex(text[2:] if text.startswith(("0x", "0X")) else text)


def _addr(value: Any) -> bytes:
    raw = _bytes(value)
    if len(raw) != 20:
        raise RpcError(-32602, f"invalid address {value!r}")
    return raw


@lru_cache(maxsize=65_536)
def _hex_addr(raw: bytes) -> str:
    """Checksummed (EIP-55): a keccak each time, and the same few addresses come back."""
    return to_checksum_address(raw)


# ------------------------------------------------------------------ transactions


@dataclass
class Tx:
    """A decoded signed transaction."""

    raw: bytes
    hash: bytes
    type: int
    chain_id: int | None
    nonce: int
    gas: int
    to: bytes | None
    value: int
    data: bytes
    sender: bytes
    max_fee: int
    max_priority_fee: int
    access_list: list[tuple[bytes, list[bytes]]]
    v: int
    r: int
    s: int

    def effective_price(self, base_fee: int) -> int:
        if self.type == 2:
            return min(self.max_fee, base_fee + self.max_priority_fee)
        return self.max_fee

    def as_json(self, block_hash: bytes, number: int, index: int, base_fee: int) -> dict[str, Any]:
        out: dict[str, Any] = {
            "hash": _d(self.hash),
            "type": _q(self.type),
            "nonce": _q(self.nonce),
            "blockHash": _d(block_hash),
            "blockNumber": _q(number),
            "transactionIndex": _q(index),
            "from": _hex_addr(self.sender),
            "to": _hex_addr(self.to) if self.to else None,
            "value": _q(self.value),
            "gas": _q(self.gas),
            "gasPrice": _q(self.effective_price(base_fee)),
            "input": _d(self.data),
            "v": _q(self.v),
            "r": _q(self.r),
            "s": _q(self.s),
        }
        if self.chain_id is not None:
            out["chainId"] = _q(self.chain_id)
        if self.type >= 1:
            out["accessList"] = [
                {"address": _hex_addr(a), "storageKeys": [_d(k) for k in keys_]} for a, keys_ in self.access_list
            ]
            out["yParity"] = _q(self.v)
        if self.type == 2:
            out["maxFeePerGas"] = _q(self.max_fee)
            out["maxPriorityFeePerGas"] = _q(self.max_priority_fee)
        return out


def _recover(sighash: bytes, v: int, r: int, s: int) -> bytes:
    if not (0 < r < SECP256K1_N and 0 < s <= SECP256K1_N // 2):
        raise RpcError(-32000, "invalid transaction signature")
    signature = r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([v])
    try:
        public = coincurve.PublicKey.from_signature_and_message(signature, sighash, hasher=None)
    except Exception as exc:
        raise RpcError(-32000, f"invalid transaction signature: {exc}") from exc
    return keccak(public.format(compressed=False)[1:])[12:]


def decode_transaction(raw: bytes) -> Tx:
    """Decodes a legacy, EIP-2930 or EIP-1559 signed transaction and recovers its sender."""
    if not raw:
        raise RpcError(-32602, "empty transaction")
    try:
        if raw[0] >= 0xC0:
            nonce, price, gas, to, value, data, v, r, s = rlp.decode(raw)
            v_, r_, s_ = (int.from_bytes(x, "big") for x in (v, r, s))
            fields = [nonce, price, gas, to, value, data]
            if v_ >= 35:
                chain_id: int | None = (v_ - 35) // 2
                sighash = keccak(rlp.encode([*fields, chain_id, 0, 0]))
                parity = (v_ - 35) % 2
            else:
                chain_id, sighash, parity = None, keccak(rlp.encode(fields)), v_ - 27
            typ, max_fee, tip, access = 0, int.from_bytes(price, "big"), int.from_bytes(price, "big"), []
        elif raw[0] in (1, 2):
            typ = raw[0]
            items = rlp.decode(raw[1:])
            if typ == 2:
                cid, nonce, tip_b, fee_b, gas, to, value, data, access, v, r, s = items
                max_fee, tip = int.from_bytes(fee_b, "big"), int.from_bytes(tip_b, "big")
                sighash = keccak(b"\x02" + rlp.encode(items[:9]))
            else:
                cid, nonce, price, gas, to, value, data, access, v, r, s = items
                max_fee = tip = int.from_bytes(price, "big")
                sighash = keccak(b"\x01" + rlp.encode(items[:8]))
            chain_id = int.from_bytes(cid, "big")
            v_, r_, s_ = (int.from_bytes(x, "big") for x in (v, r, s))
            parity = v_
        else:
            raise RpcError(-32000, f"transaction type {raw[0]} not supported")
    except RpcError:
        raise
    except Exception as exc:  # noqa: BLE001 - any malformed encoding
        raise RpcError(-32602, f"malformed transaction: {exc}") from exc
    if parity not in (0, 1):
        raise RpcError(-32000, "invalid transaction signature")
    if to not in (b"",) and len(to) != 20:
        raise RpcError(-32602, "malformed transaction: bad recipient")
    return Tx(
        raw=raw,
        hash=keccak(raw),
        type=typ,
        chain_id=chain_id,
        nonce=int.from_bytes(nonce, "big"),
        gas=int.from_bytes(gas, "big"),
        to=bytes(to) or None,
        value=int.from_bytes(value, "big"),
        data=bytes(data),
        sender=_recover(sighash, parity, r_, s_),
        max_fee=max_fee,
        max_priority_fee=tip,
        access_list=[(bytes(a), [bytes(k) for k in ks]) for a, ks in access],
        v=v_,
        r=r_,
        s=s_,
    )


# ------------------------------------------------------------------ the engine


@dataclass
class Outcome:
    """What one transaction or call did."""

    success: bool
    output: bytes
    gas_used: int
    gas_refunded: int = 0
    created: bytes | None = None
    logs: list[tuple[bytes, list[bytes], bytes]] = field(default_factory=list)
    storage: dict[tuple[bytes, bytes], tuple[bytes, bytes]] = field(default_factory=dict)  # new, old
    # balance, nonce, code hash (None: no code) and pyrevm's account (to read new code from)
    accounts: dict[bytes, tuple[int, int, bytes | None, Any]] = field(default_factory=dict)


class InvalidTransaction(Exception):
    """revm refused the transaction before running it (intrinsic gas, limits)."""


_STORAGE_WRITE = re.compile(r"StorageChange \{ address: 0x([0-9a-f]{40}), key: (\d+), had_value: Some\((\d+)\)")
_FAILURE = re.compile(r"^(Revert|Halt) \{ (?:reason: (\w+)[^,]*, )?gas_used: (\d+)(?:, output: 0x([0-9a-f]*))? \}$")


class RevmEngine:
    """pyrevm with exact gas (see the module docstring). Not thread-safe: the node locks."""

    def __init__(self, *, chain_id: int, gas_limit: int) -> None:
        self.chain_id = chain_id
        self.evm = EVM(env=Env(cfg=CfgEnv(chain_id=chain_id)), gas_limit=gas_limit, spec_id=SPEC)
        self._access_list_set = False

    def put_account(self, address: bytes, balance: int, nonce: int, code: bytes | None) -> None:
        # pyrevm 0.3.7's stub omits `balance`, which its AccountInfo takes.
        info = AccountInfo(balance=balance, nonce=nonce, code=code or None)  # type: ignore[call-arg]
        self.evm.insert_account_info(_d(address), info)

    def put_slot(self, address: bytes, slot: bytes, value: bytes) -> None:
        # pyrevm writes a slot to its database only while the account is not in the journal
        # (else it journals the write, warm); the checkpoint takes the account back out.
        checkpoint = self.evm.snapshot()
        self.evm.insert_account_storage(_d(address), int.from_bytes(slot, "big"), int.from_bytes(value, "big"))
        self.evm.revert(checkpoint)

    def run(
        self,
        *,
        caller: bytes,
        to: bytes | None,
        data: bytes,
        value: int,
        gas: int,
        number: int,
        timestamp: int,
        access_list: list[tuple[bytes, list[bytes]]] | None = None,
        keep: bool,
    ) -> Outcome:
        """Runs one transaction; with `keep`, returns its writes (nothing is applied here)."""
        evm = self.evm
        evm.set_block_env(
            BlockEnv(
                number=number,
                coinbase=_d(COINBASE),
                timestamp=timestamp,
                prevrandao=keccak(number.to_bytes(32, "big")),
                gas_limit=EMBEDDED_GAS_LIMIT,
            )
        )
        if access_list or self._access_list_set:
            evm.set_tx_env(
                TxEnv(access_list=[(_d(a), [int.from_bytes(k, "big") for k in ks]) for a, ks in access_list or []])
            )
            self._access_list_set = bool(access_list)
        checkpoint = evm.snapshot()
        try:
            created: bytes | None = None
            try:
                if to is None:
                    created = _bytes(evm.deploy(_d(caller), data, value=value, gas=gas))
                    output = b""
                else:
                    output = bytes(evm.message_call(_d(caller), _d(to), data, value=value, gas=gas))
                success = True
            except RuntimeError as exc:
                result = evm.result
                match = _FAILURE.match(str(exc))
                if result is None or match is None:
                    raise InvalidTransaction(str(exc)) from exc
                success, output = False, bytes.fromhex(match.group(4) or "")
            result = evm.result
            assert result is not None  # set by every transaction revm ran
            out = Outcome(success, output, int(result.gas_used), int(result.gas_refunded or 0), created)
            if success:
                out.logs = [(_bytes(log.address), list(log.data[0]), bytes(log.data[1])) for log in result.logs]
            if keep:
                self._read_writes(out)
            return out
        finally:
            evm.revert(checkpoint)
            evm.reset_transient_storage()

    def _read_writes(self, out: Outcome) -> None:
        journal = self.evm.journal_str
        journal = journal[journal.rindex(", journal: [") :]
        for match in _STORAGE_WRITE.finditer(journal):
            key = (bytes.fromhex(match.group(1)), int(match.group(2)).to_bytes(32, "big"))
            if key not in out.storage:  # the first write's previous value is the original
                out.storage[key] = (b"", int(match.group(3)).to_bytes(32, "big"))
        for (address, slot), (_, old) in list(out.storage.items()):
            new = int(self.evm.storage(_d(address), int.from_bytes(slot, "big"))).to_bytes(32, "big")
            if new == old:
                del out.storage[(address, slot)]
            else:
                out.storage[(address, slot)] = (new, old)
        for name, info in self.evm.journal_state.items():
            code_hash = bytes(info.code_hash) if info.code_hash else None
            out.accounts[_addr(name)] = (
                int(info.balance),
                int(info.nonce),
                None if code_hash in (None, EMPTY_CODE_HASH) else code_hash,
                info,
            )


# ------------------------------------------------------------------ the node


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


class RevmNode:
    """A one-process development node over `RevmEngine`, persisted in a `ChainStore`."""

    WRITES = frozenset(
        {
            "eth_sendRawTransaction",
            "eth_sendTransaction",
            "evm_snapshot",
            "evm_revert",
            "evm_mine",
            "evm_setNextBlockTimestamp",
            "evm_increaseTime",
        }
    )

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
        self._dev_accounts = {keys.PrivateKey(_bytes(k)).public_key.to_canonical_address(): k for k in self.dev_keys}
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
        block = BlockWrite(0, _bytes(header["hash"]), header, accounts=accounts)  # type: ignore[arg-type]
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
        self.head = _int(header["number"])
        self.head_header = header
        self.head_timestamp = _int(header["timestamp"])
        self.base_fee = _int(header["baseFeePerGas"])

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
        return _next_base_fee(self.base_fee, _int(self.head_header["gasUsed"]), self.gas_limit)

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
            "number": _q(number),
            "hash": _d(block_hash),
            "parentHash": _d(parent),
            "nonce": "0x0000000000000000",
            "mixHash": _d(keccak(number.to_bytes(32, "big"))),
            "sha3Uncles": _d(EMPTY_UNCLES),
            "logsBloom": _d(bloom),
            "transactionsRoot": _d(b"\x00" * 32 if tx_hashes else EMPTY_TRIE_ROOT),
            "stateRoot": _d(b"\x00" * 32),
            "receiptsRoot": _d(b"\x00" * 32 if tx_hashes else EMPTY_TRIE_ROOT),
            "miner": _hex_addr(COINBASE),
            "difficulty": "0x0",
            "totalDifficulty": "0x0",
            "extraData": "0x",
            "size": _q(600 + 32 * len(tx_hashes)),
            "gasLimit": _q(self.gas_limit),
            "gasUsed": _q(gas_used),
            "timestamp": _q(timestamp),
            "baseFeePerGas": _q(base_fee),
            "withdrawals": [],
            "withdrawalsRoot": _d(EMPTY_TRIE_ROOT),
            "blobGasUsed": "0x0",
            "excessBlobGas": "0x0",
            "parentBeaconBlockRoot": _d(b"\x00" * 32),
            "uncles": [],
        }

    def _mine_empty(self, timestamp: int | None = None) -> None:
        number = self.head + 1
        ts = timestamp if timestamp is not None else self._pending_timestamp()
        self._next_timestamp = None
        header = self._header(number, _bytes(self.head_header["hash"]), ts, self._next_block_fee(), 0, [], bytes(256))
        self.store.write_block(BlockWrite(number, _bytes(header["hash"]), header))
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
            number, _bytes(self.head_header["hash"]), timestamp, base_fee, out.gas_used, [tx.hash], bloom
        )
        block_hash = _bytes(header["hash"])
        receipt = {
            "transactionHash": _d(tx.hash),
            "transactionIndex": "0x0",
            "blockHash": header["hash"],
            "blockNumber": header["number"],
            "from": _hex_addr(tx.sender),
            "to": _hex_addr(tx.to) if tx.to else None,
            "cumulativeGasUsed": _q(out.gas_used),
            "gasUsed": _q(out.gas_used),
            "effectiveGasPrice": _q(price),
            "contractAddress": _hex_addr(out.created) if out.created and out.success else None,
            "logsBloom": _d(bloom),
            "type": _q(tx.type),
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
                number = self.store.block_number_of(_bytes(tag["blockHash"]))
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
        number = _int(tag)
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
            yield number, _int(header["timestamp"])
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
            yield number, _int(header["timestamp"])
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
            "data": _bytes(call.get("data") or call.get("input")),
            "value": _int(call.get("value")),
        }

    def _run_call(self, call: dict[str, Any], tag: Any, gas: int | None = None) -> Outcome:
        number = self._block_number(tag, default_pending=True)
        args = self._call_args(call)
        with self._state_at(number) as (block_number, timestamp):
            try:
                return self.engine.run(
                    **args,
                    gas=gas or _int(call.get("gas")) or self.gas_limit,
                    number=block_number,
                    timestamp=timestamp,
                    keep=False,
                )
            except InvalidTransaction as exc:
                raise RpcError(-32000, str(exc)) from exc

    @staticmethod
    def _revert_error(out: Outcome) -> RpcError:
        if out.output:
            return RpcError(3, "execution reverted", _d(out.output))
        return RpcError(3, "execution reverted", "0x")

    def eth_call(self, call: dict[str, Any], tag: Any = "latest") -> str:
        out = self._run_call(call, tag)
        if not out.success:
            raise self._revert_error(out)
        return _d(out.output)

    def eth_estimateGas(self, call: dict[str, Any], tag: Any = "pending") -> str:  # noqa: N802 - JSON-RPC name
        cap = _int(call.get("gas")) or self.gas_limit
        out = self._run_call(call, tag, cap)
        if not out.success:
            if out.output or out.gas_used < cap:
                raise self._revert_error(out)
            raise RpcError(-32000, f"gas required exceeds allowance ({cap})")
        low = out.gas_used + out.gas_refunded  # spent before the refund: the least that can work
        if self._run_call(call, tag, low).success:
            return _q(low)
        high = cap
        while high - low > 1_000:  # the first failing bound is rarely far off; stop within 1,000 gas
            mid = (low + high) // 2
            if self._run_call(call, tag, mid).success:
                high = mid
            else:
                low = mid
        return _q(high)

    # ------------------------------------------------------------ JSON-RPC methods

    def web3_clientVersion(self) -> str:  # noqa: N802
        return "loyalty-embedded-revm/pyrevm-0.3.7"

    def net_version(self) -> str:
        return str(self.chain_id)

    def net_listening(self) -> bool:
        return True

    def eth_chainId(self) -> str:  # noqa: N802
        return _q(self.chain_id)

    def eth_blockNumber(self) -> str:  # noqa: N802
        return _q(self.head)

    def eth_syncing(self) -> bool:
        return False

    def eth_mining(self) -> bool:
        return True

    def eth_gasPrice(self) -> str:  # noqa: N802
        return _q(self._next_block_fee() + 10**9)

    def eth_maxPriorityFeePerGas(self) -> str:  # noqa: N802
        return _q(10**9)

    def eth_accounts(self) -> list[str]:
        return [_hex_addr(a) for a in self._dev_accounts]

    def _account_at(self, address: Any, tag: Any) -> AccountState:
        number = self._block_number(tag)
        raw = _addr(address)
        if number is None or number == self.head:
            return self._account(raw)
        return self.store.account_at(raw, number)

    def eth_getBalance(self, address: Any, tag: Any = "latest") -> str:  # noqa: N802
        return _q(self._account_at(address, tag).balance)

    def eth_getTransactionCount(self, address: Any, tag: Any = "latest") -> str:  # noqa: N802
        return _q(self._account_at(address, tag).nonce)

    def eth_getCode(self, address: Any, tag: Any = "latest") -> str:  # noqa: N802
        code_hash = self._account_at(address, tag).code_hash
        if code_hash is None:
            return "0x"
        return _d(self._codes.get(code_hash) or self.store.code(code_hash))

    def eth_getStorageAt(self, address: Any, slot: Any, tag: Any = "latest") -> str:  # noqa: N802
        number = self._block_number(tag)
        key = _int(slot).to_bytes(32, "big")
        return _d(self.store.slot_at(_addr(address), key, None if number == self.head else number))

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
        return self._block(self.store.block_number_of(_bytes(block_hash)), bool(full))

    def eth_getTransactionByHash(self, tx_hash: Any) -> dict[str, Any] | None:  # noqa: N802
        found = self.store.tx(_bytes(tx_hash))
        return None if found is None else found[0]

    def _log_json(self, row: tuple[int, int, int, bytes, bytes, bytes, bytes], block_hash: str) -> dict[str, Any]:
        number, log_index, tx_index, tx_hash, address, topics, data = row
        return {
            "address": _hex_addr(address),
            "topics": [_d(topics[i : i + 32]) for i in range(0, len(topics), 32)],
            "data": _d(data),
            "blockNumber": _q(number),
            "blockHash": block_hash,
            "transactionHash": _d(tx_hash),
            "transactionIndex": _q(tx_index),
            "logIndex": _q(log_index),
            "removed": False,
        }

    def eth_getTransactionReceipt(self, tx_hash: Any) -> dict[str, Any] | None:  # noqa: N802
        found = self.store.tx(_bytes(tx_hash))
        if found is None:
            return None
        _, receipt, number = found
        rows = self.store.logs(number, number, tx_hash=_bytes(tx_hash))
        receipt["logs"] = [self._log_json(r, receipt["blockHash"]) for r in rows]
        return receipt

    def eth_getLogs(self, query: dict[str, Any]) -> list[dict[str, Any]]:  # noqa: N802
        if query.get("blockHash"):
            number = self.store.block_number_of(_bytes(query["blockHash"]))
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
            topic0 = [_bytes(t) for t in (first if isinstance(first, list) else [first])]
        rows = self.store.logs(start, end, addresses, topic0)
        wanted = [None if t is None else {_bytes(x) for x in (t if isinstance(t, list) else [t])} for t in topics[1:]]
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
                hashes[number] = header["hash"] if header else _d(ZERO32)
            out.append(self._log_json(row, hashes[number]))
        return out

    def eth_sendRawTransaction(self, raw: Any) -> str:  # noqa: N802
        tx = decode_transaction(_bytes(raw))
        if self.store.tx(tx.hash) is not None:
            raise RpcError(-32000, "already known")
        self._mine_tx(tx)
        return _d(tx.hash)

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
            "nonce": _int(call["nonce"]) if call.get("nonce") is not None else self._account(sender).nonce,
            "value": _int(call.get("value")),
            "data": _d(_bytes(call.get("data") or call.get("input"))),
            "maxPriorityFeePerGas": _int(call.get("maxPriorityFeePerGas") or 10**9),
            "maxFeePerGas": _int(call.get("maxFeePerGas") or 2 * base_fee + 10**9),
        }
        if call.get("to"):
            tx["to"] = _hex_addr(_addr(call["to"]))
        tx["gas"] = _int(call.get("gas")) or _int(self.eth_estimateGas({**call, "from": _hex_addr(sender)}, "pending"))
        signed = Account.sign_transaction(tx, key)
        return self.eth_sendRawTransaction(bytes(signed.raw_transaction))

    # development controls

    def evm_mine(self, timestamp: Any = None) -> str:
        self._mine_empty(_int(timestamp) if timestamp is not None else None)
        return "0x0"

    def evm_setNextBlockTimestamp(self, timestamp: Any) -> None:  # noqa: N802
        ts = _int(timestamp)
        if ts <= self.head_timestamp:
            raise RpcError(-32000, f"timestamp {ts} not after the head's {self.head_timestamp}")
        self._next_timestamp = ts

    def evm_increaseTime(self, seconds: Any) -> str:  # noqa: N802
        self._next_timestamp = self._pending_timestamp() + _int(seconds)
        return _q(_int(seconds))

    def evm_snapshot(self) -> str:
        snapshot_id = len(self._snapshots) + 1
        self._snapshots[snapshot_id] = self.head
        return _q(snapshot_id)

    def evm_revert(self, snapshot_id: Any) -> bool:
        number = self._snapshots.get(_int(snapshot_id))
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
        self._snapshots = {k: v for k, v in self._snapshots.items() if k < _int(snapshot_id)}
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


class RevmProvider(BaseProvider):
    """web3's provider for an in-process `RevmNode`: answers as a JSON-RPC node would."""

    def __init__(self, node: RevmNode) -> None:
        super().__init__()
        self.node = node
        self._ids = iter(range(1, 2**62))

    def make_request(self, method: Any, params: Any) -> Any:
        return self.node.request(str(method), params, next(self._ids))

    def make_batch_request(self, requests: list[tuple[Any, Any]]) -> Any:
        return [self.node.request(str(m), p, i) for i, (m, p) in enumerate(requests)]

    def is_connected(self, show_traceback: bool = False) -> bool:
        return True


class RevmChain(EmbeddedChain):
    """The embedded chain on revm: `EmbeddedChain(engine="revm")` builds one."""

    name = "embedded"
    engine_name = "revm"

    def __init__(
        self,
        path: Path | None = None,
        *,
        engine: str | None = None,
        chain_id: int = EMBEDDED_CHAIN_ID,
        dev_keys: list[str] | None = None,
    ) -> None:
        self.path = path
        self.node = RevmNode(path, chain_id=chain_id, dev_keys=dev_keys)
        self.w3 = Web3(RevmProvider(self.node))

    @property
    def dev_keys(self) -> list[str]:
        return list(self.node.dev_keys)

    @property
    def chain_id(self) -> int:
        return self.node.chain_id

    def _call(self, method: str, *params: Any) -> Any:
        response = self.node.request(method, list(params))
        if "error" in response:
            from gateway.core.errors import ChainError

            raise ChainError(f"{method} failed: {response['error']['message']}")
        return response["result"]

    def snapshot(self) -> Any:
        return self._call("evm_snapshot")

    def revert(self, snapshot: Any) -> None:
        if not self._call("evm_revert", snapshot):
            from gateway.core.errors import ChainError

            raise ChainError(f"evm_revert to {snapshot} refused")

    def travel_to(self, timestamp: int) -> None:
        with self.node.lock:
            self._call("evm_setNextBlockTimestamp", timestamp)
            self._call("evm_mine")

    def mine(self, blocks: int = 1) -> None:
        for _ in range(blocks):
            self._call("evm_mine")

    def latest_timestamp(self) -> int:
        return self.node.head_timestamp

    def fund(self, address: str, wei: int) -> None:
        self._call("eth_sendTransaction", {"from": self.w3.eth.accounts[-1], "to": address, "value": hex(wei)})

    def close(self) -> None:
        self.node.close()
