"""The revm chain's durable store: blocks, transactions, logs, state and its history in SQLite.

pyrevm has no state dump or load, so this file is the chain: every block (its header, its
transactions and receipts, its logs, the state it changed and the values it overwrote) is
written in one SQLite transaction (WAL, synchronous=FULL), so a crash or a kill -9 leaves
the previous block or the next, never half of one. The engine loads the state from here at
start. The overwritten values (`history`) let a call or a read at an older block be answered
with that block's state, and let a development snapshot be reverted.

Without a path the same schema lives in memory (a throwaway chain for tests).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS blocks (
    number INTEGER PRIMARY KEY,
    hash BLOB NOT NULL UNIQUE,
    header TEXT NOT NULL              -- the JSON-RPC block object without its transactions
);
CREATE TABLE IF NOT EXISTS txs (
    hash BLOB PRIMARY KEY,
    block INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    tx TEXT NOT NULL,                 -- the JSON-RPC transaction object (block fields added on read)
    receipt TEXT NOT NULL             -- the JSON-RPC receipt object without its logs
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS txs_block ON txs (block, idx);
CREATE TABLE IF NOT EXISTS logs (
    block INTEGER NOT NULL,
    log_index INTEGER NOT NULL,
    tx_index INTEGER NOT NULL,
    tx_hash BLOB NOT NULL,
    address BLOB NOT NULL,
    topic0 BLOB,
    topics BLOB NOT NULL,             -- every topic, 32 bytes each
    data BLOB NOT NULL,
    PRIMARY KEY (block, log_index)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS logs_address ON logs (address, block);
CREATE TABLE IF NOT EXISTS accounts (
    address BLOB PRIMARY KEY,
    balance TEXT NOT NULL,            -- decimal: balances overflow SQLite's integers
    nonce INTEGER NOT NULL,
    code_hash BLOB
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS code (hash BLOB PRIMARY KEY, code BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS storage (
    address BLOB NOT NULL,
    slot BLOB NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (address, slot)
) WITHOUT ROWID;
-- What each block overwrote: slot IS NULL for an account (old = JSON [balance, nonce,
-- code_hash hex] or NULL when the account did not exist), else the slot's old value.
CREATE TABLE IF NOT EXISTS history (
    block INTEGER NOT NULL,
    address BLOB NOT NULL,
    slot BLOB,
    old BLOB
);
CREATE INDEX IF NOT EXISTS history_block ON history (block);
CREATE INDEX IF NOT EXISTS history_key ON history (address, slot, block);
"""

ZERO32 = b"\x00" * 32


@dataclass
class AccountState:
    balance: int = 0
    nonce: int = 0
    code_hash: bytes | None = None  # None: no code

    def as_json(self) -> str:
        return json.dumps([str(self.balance), self.nonce, self.code_hash.hex() if self.code_hash else None])

    @classmethod
    def from_json(cls, text: str | bytes | None) -> AccountState:
        if text is None:
            return cls()
        balance, nonce, code_hash = json.loads(text)
        return cls(int(balance), int(nonce), bytes.fromhex(code_hash) if code_hash else None)


@dataclass
class BlockWrite:
    """Everything one block changes, written in one transaction."""

    number: int
    hash: bytes
    header: dict[str, Any]
    txs: list[tuple[bytes, int, dict[str, Any], dict[str, Any]]] = field(default_factory=list)
    # (log_index, tx_index, tx_hash, address, topics, data)
    logs: list[tuple[int, int, bytes, bytes, list[bytes], bytes]] = field(default_factory=list)
    accounts: dict[bytes, tuple[AccountState, AccountState | None]] = field(default_factory=dict)  # new, old
    storage: dict[tuple[bytes, bytes], tuple[bytes, bytes]] = field(default_factory=dict)  # new, old
    code: dict[bytes, bytes] = field(default_factory=dict)


class ChainStore:
    """One SQLite file (or memory) holding the chain; a single writer, the engine."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(str(path) if path else ":memory:", isolation_level=None, check_same_thread=False)
        if path is not None:
            self._conn.execute("PRAGMA journal_mode=WAL")
            # FULL: a committed block survives a power cut too, not only a killed process.
            self._conn.execute("PRAGMA synchronous=FULL")
        tables = {r[0] for r in self._conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "kv" in tables:
            raise ValueError(f"{path} holds a py-evm chain, not a revm one (open it with the py-evm engine)")
        self._conn.executescript(_SCHEMA)
        version = self.meta("schema_version")
        if version is None:
            self.set_meta("schema_version", str(SCHEMA_VERSION))
        elif int(version) != SCHEMA_VERSION:
            raise ValueError(f"{path}: revm chain store version {version}, expected {SCHEMA_VERSION}")

    @staticmethod
    def holds_pyevm_chain(path: Path) -> bool:
        """Whether `path` is a py-evm chain (the SQLite key-value store of embedded_store)."""
        if not path.exists() or path.stat().st_size == 0:
            return False
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='kv'").fetchone() is not None
        except sqlite3.DatabaseError:
            return False
        finally:
            conn.close()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # ------------------------------------------------------------ meta

    def meta(self, key: str) -> str | None:
        with self._lock:
            row = self._conn.execute("SELECT v FROM meta WHERE k = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self._lock:
            self._conn.execute("INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)", (key, value))

    # ------------------------------------------------------------ writing

    def write_block(self, block: BlockWrite) -> None:
        """Commits one block and the state it changed, all or nothing."""
        c = self._conn
        with self._lock:
            c.execute("BEGIN IMMEDIATE")
            try:
                c.execute(
                    "INSERT INTO blocks (number, hash, header) VALUES (?, ?, ?)",
                    (block.number, block.hash, json.dumps(block.header)),
                )
                c.executemany(
                    "INSERT INTO txs (hash, block, idx, tx, receipt) VALUES (?, ?, ?, ?, ?)",
                    [(h, block.number, i, json.dumps(tx), json.dumps(r)) for h, i, tx, r in block.txs],
                )
                c.executemany(
                    "INSERT INTO logs (block, log_index, tx_index, tx_hash, address, topic0, topics, data)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (block.number, li, ti, th, a, topics[0] if topics else None, b"".join(topics), d)
                        for li, ti, th, a, topics, d in block.logs
                    ],
                )
                c.executemany("INSERT OR IGNORE INTO code (hash, code) VALUES (?, ?)", list(block.code.items()))
                c.executemany(
                    "INSERT OR REPLACE INTO accounts (address, balance, nonce, code_hash) VALUES (?, ?, ?, ?)",
                    [(a, str(new.balance), new.nonce, new.code_hash) for a, (new, _) in block.accounts.items()],
                )
                c.executemany(
                    "INSERT INTO history (block, address, slot, old) VALUES (?, ?, NULL, ?)",
                    [
                        (block.number, a, old.as_json() if old is not None else None)
                        for a, (_, old) in block.accounts.items()
                    ],
                )
                c.executemany(
                    "INSERT OR REPLACE INTO storage (address, slot, value) VALUES (?, ?, ?)",
                    [(a, s, new) for (a, s), (new, _) in block.storage.items() if new != ZERO32],
                )
                c.executemany(
                    "DELETE FROM storage WHERE address = ? AND slot = ?",
                    [(a, s) for (a, s), (new, _) in block.storage.items() if new == ZERO32],
                )
                c.executemany(
                    "INSERT INTO history (block, address, slot, old) VALUES (?, ?, ?, ?)",
                    [(block.number, a, s, old) for (a, s), (_, old) in block.storage.items()],
                )
            except BaseException:
                c.execute("ROLLBACK")
                raise
            c.execute("COMMIT")

    def undo_after(self, number: int) -> tuple[dict[bytes, AccountState | None], dict[tuple[bytes, bytes], bytes]]:
        """Deletes every block after `number` and restores the state as it was at `number`
        (a development snapshot's revert). Returns the restored accounts and slots."""
        c = self._conn
        with self._lock:
            accounts, storage = self.changes_since(number)
            c.execute("BEGIN IMMEDIATE")
            try:
                for address, state in accounts.items():
                    if state is None:
                        c.execute("DELETE FROM accounts WHERE address = ?", (address,))
                    else:
                        c.execute(
                            "INSERT OR REPLACE INTO accounts (address, balance, nonce, code_hash) VALUES (?, ?, ?, ?)",
                            (address, str(state.balance), state.nonce, state.code_hash),
                        )
                for (address, slot), value in storage.items():
                    if value == ZERO32:
                        c.execute("DELETE FROM storage WHERE address = ? AND slot = ?", (address, slot))
                    else:
                        c.execute(
                            "INSERT OR REPLACE INTO storage (address, slot, value) VALUES (?, ?, ?)",
                            (address, slot, value),
                        )
                for table, column in (("blocks", "number"), ("txs", "block"), ("logs", "block"), ("history", "block")):
                    c.execute(f"DELETE FROM {table} WHERE {column} > ?", (number,))  # noqa: S608 - fixed names
            except BaseException:
                c.execute("ROLLBACK")
                raise
            c.execute("COMMIT")
        return accounts, storage

    # ------------------------------------------------------------ state

    def load_state(self) -> Iterator[tuple[str, Any]]:
        """Every account ("account", (address, state, code)) then every slot ("slot", ...)."""
        with self._lock:
            codes = dict(self._conn.execute("SELECT hash, code FROM code").fetchall())
            accounts = self._conn.execute("SELECT address, balance, nonce, code_hash FROM accounts").fetchall()
            slots = self._conn.execute("SELECT address, slot, value FROM storage").fetchall()
        for address, balance, nonce, code_hash in accounts:
            yield "account", (bytes(address), AccountState(int(balance), int(nonce), code_hash), codes.get(code_hash))
        for address, slot, value in slots:
            yield "slot", (bytes(address), bytes(slot), bytes(value))

    def changes_since(self, number: int) -> tuple[dict[bytes, AccountState | None], dict[tuple[bytes, bytes], bytes]]:
        """The accounts and slots changed after block `number`, with their values at `number`."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT address, slot, old FROM history WHERE block > ? ORDER BY block DESC, rowid DESC", (number,)
            ).fetchall()
        accounts: dict[bytes, AccountState | None] = {}
        storage: dict[tuple[bytes, bytes], bytes] = {}
        for address, slot, old in rows:  # newest first: the last one seen is the oldest value
            if slot is None:
                accounts[bytes(address)] = AccountState.from_json(old) if old is not None else None
            else:
                storage[(bytes(address), bytes(slot))] = bytes(old)
        return accounts, storage

    def account_at(self, address: bytes, number: int | None) -> AccountState:
        """The account at block `number` (None: the head)."""
        with self._lock:
            if number is not None:
                row = self._conn.execute(
                    "SELECT old FROM history WHERE address = ? AND slot IS NULL AND block > ? ORDER BY block LIMIT 1",
                    (address, number),
                ).fetchone()
                if row is not None:
                    return AccountState.from_json(row[0])
            row = self._conn.execute(
                "SELECT balance, nonce, code_hash FROM accounts WHERE address = ?", (address,)
            ).fetchone()
        return AccountState(int(row[0]), int(row[1]), row[2]) if row else AccountState()

    def slot_at(self, address: bytes, slot: bytes, number: int | None) -> bytes:
        with self._lock:
            if number is not None:
                row = self._conn.execute(
                    "SELECT old FROM history WHERE address = ? AND slot = ? AND block > ? ORDER BY block LIMIT 1",
                    (address, slot, number),
                ).fetchone()
                if row is not None:
                    return bytes(row[0])
            row = self._conn.execute(
                "SELECT value FROM storage WHERE address = ? AND slot = ?", (address, slot)
            ).fetchone()
        return bytes(row[0]) if row else ZERO32

    def code(self, code_hash: bytes | None) -> bytes:
        if code_hash is None:
            return b""
        with self._lock:
            row = self._conn.execute("SELECT code FROM code WHERE hash = ?", (code_hash,)).fetchone()
        return bytes(row[0]) if row else b""

    # ------------------------------------------------------------ blocks, transactions, logs

    def head(self) -> int | None:
        with self._lock:
            row = self._conn.execute("SELECT MAX(number) FROM blocks").fetchone()
        return None if row[0] is None else int(row[0])

    def header(self, number: int) -> dict[str, Any] | None:
        with self._lock:
            row = self._conn.execute("SELECT header FROM blocks WHERE number = ?", (number,)).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def block_number_of(self, block_hash: bytes) -> int | None:
        with self._lock:
            row = self._conn.execute("SELECT number FROM blocks WHERE hash = ?", (block_hash,)).fetchone()
        return None if row is None else int(row[0])

    def block_txs(self, number: int) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._conn.execute("SELECT tx FROM txs WHERE block = ? ORDER BY idx", (number,)).fetchall()
        return [dict(json.loads(r[0])) for r in rows]

    def tx(self, tx_hash: bytes) -> tuple[dict[str, Any], dict[str, Any], int] | None:
        """(transaction, receipt without logs, block number) of a mined transaction."""
        with self._lock:
            row = self._conn.execute("SELECT tx, receipt, block FROM txs WHERE hash = ?", (tx_hash,)).fetchone()
        if row is None:
            return None
        return dict(json.loads(row[0])), dict(json.loads(row[1])), int(row[2])

    def logs(
        self,
        from_block: int,
        to_block: int,
        addresses: Iterable[bytes] | None = None,
        topic0: Iterable[bytes] | None = None,
        tx_hash: bytes | None = None,
    ) -> list[tuple[int, int, int, bytes, bytes, bytes, bytes]]:
        """(block, log_index, tx_index, tx_hash, address, topics, data) in chain order."""
        where: list[str] = ["block BETWEEN ? AND ?"]
        args: list[Any] = [from_block, to_block]
        if addresses is not None:
            addresses = list(addresses)
            where.append(f"address IN ({','.join('?' * len(addresses))})")
            args += addresses
        if topic0 is not None:
            topic0 = list(topic0)
            where.append(f"topic0 IN ({','.join('?' * len(topic0))})")
            args += topic0
        if tx_hash is not None:
            where.append("tx_hash = ?")
            args.append(tx_hash)
        sql = (
            "SELECT block, log_index, tx_index, tx_hash, address, topics, data FROM logs WHERE "  # noqa: S608
            + " AND ".join(where)
            + " ORDER BY block, log_index"
        )
        with self._lock:
            rows = self._conn.execute(sql, args).fetchall()
        return [(int(b), int(li), int(ti), bytes(th), bytes(a), bytes(t), bytes(d)) for b, li, ti, th, a, t, d in rows]
