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


def test_the_migrations_build_the_schema_the_models_declare(tmp_path: Path) -> None:
    """Alembic's own comparison of the migrated database with `gateway.db.models`: a table,
    column or index added to one and not the other (an index in a model without its
    migration would exist in tests and never in a real deployment) shows as a difference."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlalchemy import create_engine

    from gateway.db.models import Base
    from gateway.db.session import migrate

    url = f"sqlite:///{tmp_path / 'schema.sqlite'}"
    migrate(url)
    engine = create_engine(url)
    with engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    # SQLite reports types loosely (e.g. a BigInteger primary key as INTEGER): tables, columns
    # and indexes are what a migration can forget.
    shape = [d for d in differences if isinstance(d, tuple) and d[0].startswith(("add_", "remove_"))]
    assert shape == []
