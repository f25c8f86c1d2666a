"""One submitter per database: the lock its candidates compete for, which /healthz and
`loyalty reindex` look at too.

PostgreSQL: a session advisory lock, released by the database when the holder's connection
dies. SQLite: an exclusive lock on `submitter.lock` beside the database, released by the
kernel when the holder dies.
"""

from __future__ import annotations

import fcntl
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import Connection, Engine, text

ADVISORY_LOCK_KEY = 0x10_7A17  # one submitter per PostgreSQL database
LOCK_FILE = "submitter.lock"

_TRY_LOCK = text("SELECT pg_try_advisory_lock(:k)")
# pg_try_advisory_lock(bigint) shows in pg_locks as classid (high 32 bits), objid (low 32
# bits), objsubid 1, in the current database.
_HELD = text(
    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted"
    " AND classid = 0 AND objid = :k AND objsubid = 1"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database()))"
)


def try_advisory_lock(conn: Connection) -> bool:
    """Takes the submitter's PostgreSQL lock on this connection's session, if it is free."""
    got = bool(conn.execute(_TRY_LOCK, {"k": ADVISORY_LOCK_KEY}).scalar())
    conn.commit()
    return got


class SubmitterLock:
    """The lock of one database (and, on SQLite, of its data directory)."""

    def __init__(self, engine: Engine, data_dir: Path) -> None:
        self.engine = engine
        self.path = data_dir / LOCK_FILE
        self.held = False
        self._conn: Any = None
        self._file: BinaryIO | None = None

    @property
    def postgresql(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    def acquire(self) -> bool:
        """Takes the lock, or keeps it; False while another process holds it."""
        if not self.postgresql:
            if self._file is None:
                handle = open(self.path, "a+b")  # noqa: SIM115 - held while leading
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    handle.close()
                    self.held = False
                    return False
                self._file = handle
            self.held = True
            return True
        if self._conn is None:
            self._conn = self.engine.connect()
        try:
            got = try_advisory_lock(self._conn)
        except Exception:  # noqa: BLE001 - a broken connection simply means "not the leader now"
            self._conn = None
            got = False
        self.held = got
        return got

    def held_by_anyone(self) -> bool:
        """Whether any process (this one or another) holds the lock right now, looking without
        taking it for longer than a moment."""
        if self.held:
            return True
        if self.postgresql:
            with self.engine.connect() as conn:
                return bool(conn.execute(_HELD, {"k": ADVISORY_LOCK_KEY}).scalar())
        with open(self.path, "a+b") as handle:
            try:  # a shared lock is refused while someone holds the exclusive one
                fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            return False

    def release(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._file is not None:
            self._file.close()  # closing the file releases the lock
            self._file = None
        self.held = False
