"""The gateway's SQLite file holds encrypted keys and API key hashes: owner-only, always."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from sqlalchemy import text

from gateway.db.session import make_engine, migrate


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_database_and_its_wal_are_created_owner_only(tmp_path: Path) -> None:
    old = os.umask(0o022)  # a typical umask, which made the file 0644 before
    try:
        db = tmp_path / "gateway.sqlite"
        url = f"sqlite:///{db}"
        migrate(url)
        engine = make_engine(url, writer=True)
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE t (x INTEGER)"))
            conn.execute(text("INSERT INTO t VALUES (1)"))
            assert _mode(db) == 0o600
            assert _mode(Path(f"{db}-wal")) == 0o600
        engine.dispose()
    finally:
        os.umask(old)


def test_an_existing_world_readable_database_is_made_private(tmp_path: Path) -> None:
    db = tmp_path / "gateway.sqlite"
    db.touch(mode=0o644)
    os.chmod(db, 0o644)
    make_engine(f"sqlite:///{db}").dispose()
    assert _mode(db) == 0o600
