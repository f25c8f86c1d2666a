"""A scripted history through the API, shared by the audit tests, and a gateway on anvil.

Two partners, two custodial members; earns at both partners, a redemption, a partial
refund, an earn the contract rejects (its partner suspended for a moment), and points
swept as expired fourteen months later.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from fastapi.testclient import TestClient

from gateway.api.main import create_app
from gateway.app.bootstrap import open_runtime
from gateway.operations.queries import queue_depth
from gateway.points.rules import month_start
from tests.gateway.conftest import Gateway, make_settings

DAY = 86_400


@dataclass
class History:
    cafe: str  # partner 1's API key
    grocer: str  # partner 2's API key
    auditor: str
    operations: dict[str, str] = field(default_factory=dict)  # label -> operation id

    @property
    def ids(self) -> list[str]:
        return list(self.operations.values())


def _accepted(response: object, label: str, history: History) -> None:
    assert getattr(response, "status_code", None) == 202, getattr(response, "text", response)
    history.operations[label] = response.json()["operation_id"]  # type: ignore[attr-defined]


def drain(gw: Gateway, seconds: float = 60) -> None:
    """Runs the submitter until nothing is accepted or submitted (a node mines on its own time)."""
    deadline = time.monotonic() + seconds
    while True:
        busy = gw.submitter.step()
        with gw.runtime.sessions() as session:
            if queue_depth(session) == 0:
                return
        assert time.monotonic() < deadline, "operations still pending"
        if not busy:
            time.sleep(0.02)


def scripted_history(gw: Gateway) -> History:
    cafe = gw.partner("Bean & Leaf")["api_key"]
    grocer = gw.partner("Green Grocer", per=50)["api_key"]
    auditor = gw.post("/v1/api-keys", gw.admin_key, {"role": "auditor"}).json()["api_key"]
    h = History(cafe, grocer, auditor)
    assert gw.post("/v1/members", cafe, {"member_id": "ana", "pin": "1234"}).status_code == 201
    assert gw.post("/v1/members", grocer, {"member_id": "ben", "pin": "5678"}).status_code == 201

    def earn(key: str, label: str, member: str, amount: int) -> None:
        body = {"member_id": member, "receipt_id": label, "amount_minor": amount, "currency": "EUR"}
        _accepted(gw.post("/v1/earn", key, body), label, h)

    earn(cafe, "R-1", "ana", 1250)
    earn(cafe, "R-2", "ben", 30_000)
    earn(grocer, "G-1", "ana", 4_000)
    earn(grocer, "G-2", "ben", 2_500)
    drain(gw)
    redemption = {"member_id": "ben", "receipt_id": "X-1", "points": 50, "authorization": {"pin": "5678"}}
    _accepted(gw.post("/v1/redemptions", grocer, redemption), "X-1", h)
    _accepted(gw.post("/v1/reversals", cafe, {"receipt_id": "R-2", "points": 10, "reason": "refund"}), "V-1", h)
    drain(gw)

    # The operator suspends the grocer on-chain for a moment: its next earn is rejected there.
    rt = gw.runtime
    rt.ledger.call(rt.operator, "setPartnerActive", 2, False)
    earn(grocer, "G-3", "ana", 1_000)
    drain(gw)
    rt.ledger.call(rt.operator, "setPartnerActive", 2, True)

    # Fourteen months on, the first points have expired; someone sweeps them on-chain.
    now = rt.chain.latest_timestamp()
    month = rt.ledger.month_of(now)
    rt.chain.travel_to(month_start(month + 14) + 15 * DAY)
    addresses = [gw.get(f"/v1/members/{m}", cafe).json()["address"] for m in ("ana", "ben")]
    expired = rt.ledger.expire(rt.operator, addresses).named("Expired")
    assert expired, "the first earns should have expired"
    return h


@contextmanager
def gateway_on(network: str | None, data_dir: Path, database_url: str | None) -> Iterator[Gateway]:
    """A gateway (no submitter thread: tests call `settle`) on `network`, e.g. an anvil URL."""
    runtime = open_runtime(make_settings(database_url), data_dir=data_dir, network=network, log=False)
    app = create_app(runtime, run_submitter=False)
    admin_key = (data_dir / "admin.key").read_text().strip()
    try:
        with TestClient(app) as client:
            yield Gateway(runtime, client, app.state.submitter, admin_key)
    finally:
        runtime.close()
