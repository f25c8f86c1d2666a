"""POST/GET /v1/audit/verify: the audit's verification as a job an auditor polls."""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa

from tests.gateway.conftest import Gateway
from tests.gateway.history import History, scripted_history


def finished(gw: Gateway, key: str, job_id: str, seconds: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while True:
        response = gw.get(f"/v1/audit/verify/{job_id}", key)
        assert response.status_code == 200, response.text
        job: dict[str, Any] = response.json()
        if job["status"] != "running":
            return job
        assert time.monotonic() < deadline, f"job still running: {job['progress']}"
        time.sleep(0.1)


def test_a_clean_history_verifies_ok(gw: Gateway) -> None:
    h: History = scripted_history(gw)
    started = gw.post("/v1/audit/verify", h.auditor, None)
    assert started.status_code == 202, started.text
    job_id = started.json()["job_id"]
    assert started.headers["location"] == f"/v1/audit/verify/{job_id}"
    job = finished(gw, h.auditor, job_id)
    assert job["status"] == "done" and job["error"] is None, job
    assert job["ok"] is True and job["discrepancies"] == []
    # four earns, a redemption and a refund on-chain; the rejected earn is in the index only
    assert (job["operations"], job["index_operations"], job["members"]) == (6, 7, 2)
    assert job["supply"] == sum(gw.get(f"/v1/members/{m}", h.cafe).json()["balance"] for m in ("ana", "ben"))
    assert job["progress"]["blocks_read"] == job["progress"]["blocks_total"] > 0
    latest = gw.get("/v1/audit/verify", h.auditor)
    assert latest.status_code == 200 and latest.json()["job_id"] == job_id
    admin_may = gw.post("/v1/audit/verify", gw.admin_key, None)
    assert admin_may.status_code == 202 and admin_may.json()["job_id"] != job_id
    assert finished(gw, gw.admin_key, admin_may.json()["job_id"])["ok"] is True


def test_a_tampered_receipt_is_listed(gw: Gateway) -> None:
    h = scripted_history(gw)
    with gw.runtime.writes.begin() as session:
        session.execute(
            sa.text("UPDATE receipts SET receipt_doc = replace(receipt_doc, '30000', '3000') WHERE receipt_id = 'R-2'")
        )
    job = finished(gw, h.auditor, gw.post("/v1/audit/verify", h.auditor, None).json()["job_id"])
    assert job["status"] == "done" and job["ok"] is False
    kinds = {(d["kind"], d["where"]) for d in job["discrepancies"]}
    where = f"operation {h.operations['R-2']} (earn of partner 1, receipt R-2)"
    assert ("stored receipt does not hash to its reference", f"stored receipt of {where}") in kinds
    assert ("index copy differs from the stored receipt", where) in kinds
    assert ("receipt hash differs from the on-chain event", where) in kinds
    assert all(isinstance(d["text"], str) and d["text"] for d in job["discrepancies"])


def test_the_first_look_starts_a_job(gw: Gateway) -> None:
    auditor = gw.post("/v1/api-keys", gw.admin_key, {"role": "auditor"}).json()["api_key"]
    first = gw.get("/v1/audit/verify", auditor)
    assert first.status_code == 202 and first.json()["status"] in ("running", "done")
    job = finished(gw, auditor, first.json()["job_id"])
    assert job["ok"] is True and job["operations"] == 0


def test_only_auditors_and_admins_verify(gw: Gateway) -> None:
    partner = gw.partner()["api_key"]
    for method, path in (("post", "/v1/audit/verify"), ("get", "/v1/audit/verify"), ("get", "/v1/audit/verify/x")):
        wrong = getattr(gw.client, method)(path, headers=gw.headers(partner))
        assert (wrong.status_code, wrong.json()["error"]["code"]) == (403, "wrong_role")
        anonymous = getattr(gw.client, method)(path)
        assert (anonymous.status_code, anonymous.json()["error"]["code"]) == (401, "missing_api_key")
    auditor = gw.post("/v1/api-keys", gw.admin_key, {"role": "auditor"}).json()["api_key"]
    unknown = gw.get("/v1/audit/verify/nope", auditor)
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "unknown_job")
