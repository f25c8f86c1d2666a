"""Schemathesis (its command line) against a live gateway on the embedded chain: every documented
operation, with a partner key and with an admin key, bounded (a fixed seed, at most MAX_EXAMPLES
cases per operation and phase: examples, coverage, fuzzing; BUDGET_SECONDS per key). Checks: no
5xx, every status documented, every answer matching its documented schema."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from gateway.api.main import create_app
from gateway.app.bootstrap import open_runtime
from tests.gateway.conftest import make_settings
from tests.gateway.live import uvicorn_thread

MAX_EXAMPLES = 50  # per operation and phase (about 60 operations: still over 2,000 cases a key)
BUDGET_SECONDS = 400  # per key: 42 operations (11 console writes); ~165 s each alone, more under the full suite
SEED = 20261201
CHECKS = ["not_a_server_error", "status_code_conformance", "response_schema_conformance"]


@pytest.mark.slow(seconds=110)
def test_schemathesis_finds_no_server_error_and_no_schema_violation(tmp_path: Path) -> None:
    data = tmp_path / "data"
    runtime = open_runtime(make_settings(None), data_dir=data, log=False)
    admin = (data / "admin.key").read_text().strip()
    runs: dict[str, subprocess.CompletedProcess[str]] = {}
    try:
        with uvicorn_thread(create_app(runtime, rate_per_second=100_000)) as url:
            # Something to find: a partner, a custodial member and an earn.
            terms = {"name": "P", "currency": "EUR", "earn_rate": {"points": 1, "per_minor_units": 100}}
            made = httpx.post(
                f"{url}/v1/partners", json={**terms, "allowance": 10**9}, headers=_auth(admin), timeout=60
            )
            partner = made.json()["api_key"]
            httpx.post(f"{url}/v1/members", json={"member_id": "card-1", "pin": "1234"}, headers=_auth(partner))
            earn = {"member_id": "card-1", "receipt_id": "R-1", "amount_minor": 1250, "currency": "EUR"}
            httpx.post(f"{url}/v1/earn", json=earn, headers=_auth(partner))
            for role, key in (("partner", partner), ("admin", admin)):
                runs[role] = _run(url, key, tmp_path / role)
    finally:
        runtime.close()
    for role, done in runs.items():
        summary = [line for line in done.stdout.splitlines() if re.search(r"generated|passed|failed", line)]
        print(f"--- schemathesis with the {role} key (exit {done.returncode}):", *summary[-6:], sep="\n")
    for role, done in runs.items():
        assert done.returncode == 0, f"schemathesis with the {role} key:\n{done.stdout[-20000:]}"
        generated = re.search(r"(\d+) generated", done.stdout)
        assert generated and int(generated.group(1)) > 1000, done.stdout[-3000:]


def _run(url: str, key: str, reports: Path) -> subprocess.CompletedProcess[str]:
    command = [
        str(Path(sys.executable).parent / "schemathesis"),
        "run",
        f"{url}/openapi.json",
        "--header",
        f"Authorization: Bearer {key}",
        "--checks",
        ",".join(CHECKS),
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--generation-database",
        "none",
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--continue-on-failure",
        "--no-color",
        "--report-dir",
        str(reports),
    ]
    # Its working directory is the test's own: schemathesis keeps a cache (.schemathesis/) there.
    return subprocess.run(
        command, capture_output=True, text=True, timeout=BUDGET_SECONDS, check=False, cwd=reports.parent
    )


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
