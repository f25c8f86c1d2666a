"""Engines and sessions: SQLite (WAL) in the data directory by default, or PostgreSQL."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def database_url(data_dir: Path, configured: str | None) -> str:
    return configured or f"sqlite:///{(data_dir / 'gateway.sqlite').resolve()}"


def make_engine(url: str, *, writer: bool = False) -> Engine:
    """An engine; on SQLite, `writer=True` opens transactions with BEGIN IMMEDIATE.

    Writers take SQLite's write lock at BEGIN, so two writers never deadlock on a lock
    upgrade; readers use plain deferred transactions and, in WAL mode, never wait for it.
    """
    if url.startswith("sqlite"):
        _private_file(url)
        # One connection for all writers: they queue in the pool (first come, first served)
        # instead of in SQLite's busy handler, whose growing sleeps give seconds-long tails.
        pool = {"pool_size": 1, "max_overflow": 0, "pool_timeout": 60} if writer else {}
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **pool)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            # pysqlite's own transaction handling must step aside for the BEGIN below.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            # FULL: an answered 202 survives a power cut, not only a killed process.
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE" if writer else "BEGIN")

        return engine
    return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


def _private_file(url: str) -> None:
    """Creates the SQLite file readable by its owner only (it holds encrypted keys and key
    hashes); SQLite gives its -wal and -shm files the same mode. An existing file is made
    private too, since files made before this check were 0644."""
    path = url.split("///", 1)[1] if "///" in url else ""
    if not path or path == ":memory:" or path.startswith("file:"):
        return
    # Never open and close an existing database file here: closing any descriptor of a file
    # drops every POSIX lock this process holds on it, which lets another connection write
    # under this process's other connections and corrupts the database (SQLite's own warning).
    try:
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))  # new: nobody has it open
    except FileExistsError:
        pass
    os.chmod(path, 0o600)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def migrate(url: str) -> None:
    """Brings the schema to the newest Alembic revision."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(config, "head")
