"""py-evm key-value store on SQLite, so the embedded chain survives restarts and kill -9.

py-evm picks its store through `eth.db.get_db_backend()`, which reads the class path from
CHAIN_DB_BACKEND_CLASS and calls it with no arguments; the file path therefore comes from
LOYALTY_CHAIN_DB (set by `EmbeddedChain` while it builds the chain). Each py-evm
`atomic_batch` is one SQLite transaction, so a crash leaves the previous block or the next,
never half of one.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from eth.abc import AtomicWriteBatchAPI
from eth.db.atomic import AtomicDBWriteBatch
from eth.db.backends.base import BaseAtomicDB

PATH_VARIABLE = "LOYALTY_CHAIN_DB"


class SqliteAtomicDB(BaseAtomicDB):
    """A py-evm AtomicDatabaseAPI kept in one SQLite table (WAL, synchronous=FULL)."""

    def __init__(self, path: str | None = None) -> None:
        path = path or os.environ[PATH_VARIABLE]
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        # FULL: a committed block survives a power cut too, not only a killed process.
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("CREATE TABLE IF NOT EXISTS kv (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID")

    def __getitem__(self, key: bytes) -> bytes:
        with self._lock:
            row = self._conn.execute("SELECT v FROM kv WHERE k = ?", (key,)).fetchone()
        if row is None:
            raise KeyError(key)
        return bytes(row[0])

    def __setitem__(self, key: bytes, value: bytes) -> None:
        with self._lock:
            self._conn.execute("INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)", (key, value))

    def __delitem__(self, key: bytes) -> None:
        with self._lock:
            if self._conn.execute("DELETE FROM kv WHERE k = ?", (key,)).rowcount == 0:
                raise KeyError(key)

    def _exists(self, key: bytes) -> bool:
        with self._lock:
            return self._conn.execute("SELECT 1 FROM kv WHERE k = ?", (key,)).fetchone() is not None

    @contextmanager
    def atomic_batch(self) -> Iterator[AtomicWriteBatchAPI]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                with AtomicDBWriteBatch._commit_unless_raises(self) as batch:
                    yield batch
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._conn.close()
