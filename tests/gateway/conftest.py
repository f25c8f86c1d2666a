"""A gateway on the embedded chain with SQLite or PostgreSQL, and helpers to drive it."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from gateway.api.main import create_app
from gateway.app.bootstrap import open_runtime
from gateway.app.runtime import Runtime
from gateway.core.config import GatewaySettings, Settings
from gateway.submitter.loop import Submitter
from tests.support import anvil_required

PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def _postgres_available() -> bool:
    try:
        with sa.create_engine(PG_ADMIN_URL).connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        return True
    except Exception:  # noqa: BLE001 - any failure means "not here"
        return False


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | None]:
    if request.param == "sqlite":
        yield None  # the default: a SQLite file in the data directory
        return
    if not _postgres_available():
        if anvil_required():
            pytest.fail("PostgreSQL must be reachable at 127.0.0.1:5432 in CI")
        pytest.skip("PostgreSQL is not running at 127.0.0.1:5432")
    name = f"loyalty_test_{secrets.token_hex(4)}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@dataclass
class Gateway:
    runtime: Runtime
    client: TestClient
    submitter: Submitter
    admin_key: str

    def headers(self, key: str, idempotency_key: str | None = None) -> dict[str, str]:
        h = {"Authorization": f"Bearer {key}"}
        if idempotency_key:
            h["Idempotency-Key"] = idempotency_key
        return h

    def post(self, path: str, key: str, body: Any, idempotency_key: str | None = None) -> Any:
        return self.client.post(path, json=body, headers=self.headers(key, idempotency_key))

    def get(self, path: str, key: str) -> Any:
        return self.client.get(path, headers=self.headers(key))

    def settle(self, rounds: int = 5) -> None:
        """Runs the submitter until nothing is left to do."""
        for _ in range(rounds):
            if not self.submitter.step():
                return

    def partner(self, name: str = "Bean & Leaf", currency: str = "EUR", per: int = 100, **extra: Any) -> dict[str, Any]:
        response = self.post(
            "/v1/partners",
            self.admin_key,
            {
                "name": name,
                "currency": currency,
                "earn_rate": {"points": 1, "per_minor_units": per},
                "allowance": 10**9,
                **extra,
            },
        )
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    def count(self, table: str) -> int:
        with self.runtime.sessions() as session:
            return int(session.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())


def make_settings(database_url: str | None, **gateway: Any) -> Settings:
    return Settings(
        database_url=database_url, gateway=GatewaySettings(**{"batch_window_ms": 0, "confirmations": 0, **gateway})
    )


@pytest.fixture
def gw(tmp_path: Path, database_url: str | None) -> Iterator[Gateway]:
    runtime = open_runtime(make_settings(database_url), data_dir=tmp_path / "data", log=False)
    app = create_app(runtime, run_submitter=False)
    admin_key = (tmp_path / "data" / "admin.key").read_text().strip()
    with TestClient(app) as client:
        yield Gateway(runtime, client, app.state.submitter, admin_key)
    runtime.close()
