"""A live gateway for the SDK tests: uvicorn on a free port, the embedded chain, SQLite."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import uvicorn

from gateway.api.main import create_app
from gateway.app.bootstrap import open_runtime
from gateway.app.runtime import Runtime
from gateway.chain.backends import free_port
from gateway.chain.ledger import LedgerEvent
from gateway.core.config import GatewaySettings, Settings


@dataclass
class LiveGateway:
    url: str
    port: int
    runtime: Runtime
    admin_key: str
    _names: Iterator[int] = field(default_factory=itertools.count)

    def unique(self, label: str) -> str:
        """Ids unique in this gateway (the tests share one)."""
        return f"{label}-{next(self._names)}"

    def partner(self, *, signer_address: str | None = None, per: int = 100) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": self.unique("partner"),
            "currency": "EUR",
            "earn_rate": {"points": 1, "per_minor_units": per},
            "allowance": 10**9,
        }
        if signer_address is not None:
            body["signer_address"] = signer_address
        response = httpx.post(
            f"{self.url}/v1/partners", json=body, headers={"Authorization": f"Bearer {self.admin_key}"}, timeout=30
        )
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    def events(self, name: str, receipt_ref: str) -> list[LedgerEvent]:
        """The ledger's `name` events carrying `receipt_ref`, read from the chain."""
        ledger = self.runtime.ledger
        logs: list[Any] = self.runtime.chain.w3.eth.get_logs(
            {"address": ledger.address, "fromBlock": ledger.deployment_block, "toBlock": "latest"}
        )
        found = []
        for log in logs:
            event = ledger.decode_log(log)
            if event is not None and event.name == name and "0x" + bytes(event.args["receiptRef"]).hex() == receipt_ref:
                found.append(event)
        return found

    def balance(self, address: str) -> int:
        return self.runtime.ledger.balance_of(address)

    def operation_rows(self, partner_id: int, receipt_id: str) -> list[Any]:
        with self.runtime.sessions() as session:
            return list(
                session.execute(
                    sa.text("SELECT id, kind, status FROM operations WHERE partner_id = :p AND receipt_id = :r"),
                    {"p": partner_id, "r": receipt_id},
                ).all()
            )


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveGateway]:
    data_dir: Path = tmp_path_factory.mktemp("sdk") / "data"
    settings = Settings(gateway=GatewaySettings(batch_window_ms=20, confirmations=0))
    runtime = open_runtime(settings, data_dir=data_dir, log=False)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(runtime), host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="gateway", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the gateway did not start"
        time.sleep(0.05)
    admin_key = (data_dir / "admin.key").read_text().strip()
    yield LiveGateway(f"http://127.0.0.1:{port}", port, runtime, admin_key)
    server.should_exit = True
    thread.join(timeout=30)
    runtime.close()
