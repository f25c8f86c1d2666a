"""Batch intake through the whole gateway: how long accepting a 10,000-record CSV file takes,
and how fast its records reach the chain, beside our ledger's raw `earnBatch` rate in the
same run (scripts/bench_gateway.py's `raw_earn_rate`, on a fresh chain of the same kind).

Starts a chain (anvil, or the embedded one inside the gateway), a `loyalty serve` process,
enrols members straight into its database, then POSTs `--batches` CSV files of `--records`
earns each (one after the other, as a partner's nightly export would arrive) and follows
GET /v1/batches/{id} until every record is confirmed. The confirmed rate counts from the
first POST to the last confirmation.

    .venv/bin/python scripts/bench_batches.py [--chain anvil|embedded] [--batches 3] [--json FILE]

With `--profile TOP` it instead profiles the submitter in-process draining `--records` earns
(embedded chain): CPU seconds per 1,000 records and the TOP functions by cumulative time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from bench_gateway import (  # scripts/ is on the path of a script
    bench_partner,
    cpu_seconds,
    enrol_in_bulk,
    gateway_pids,
    raw_earn_rate,
)
from rich.console import Console

from gateway.chain.backends import AnvilNode, free_port
from gateway.core.config import REPO_ROOT

POLL_SECONDS = 0.25


def csv_file(batch: int, records: int, members: int) -> bytes:
    rows = [f"earn,m{(batch * records + i) % members},B{batch}-{i},{1000 + i % 5000},EUR" for i in range(records)]
    return ("kind,member_id,receipt_id,amount_minor,currency\n" + "\n".join(rows) + "\n").encode()


def profile_submitter(records: int, members: int, top: int, console: Console) -> None:
    """cProfile of the submitter draining `records` earns accepted in-process (embedded chain,
    SQLite, batches of 200): the submitter's and the chain's CPU per 1,000 records, and where
    it goes. The records are accepted first (one CSV file through the API, no HTTP), then
    the submitter runs round after round until every one is confirmed."""
    import cProfile
    import pstats

    from fastapi.testclient import TestClient
    from sqlalchemy import func, select

    from gateway.api.main import create_app
    from gateway.app.bootstrap import open_runtime
    from gateway.core.config import GatewaySettings, Settings
    from gateway.db.models import Operation
    from gateway.operations.kinds import Status

    data_dir = Path(tempfile.mkdtemp(prefix="profile-submitter-")) / "data"
    settings = Settings(gateway=GatewaySettings(batch_window_ms=0, confirmations=0, batch_max_operations=200))
    runtime = open_runtime(settings, data_dir=data_dir, log=False)
    app = create_app(runtime, run_submitter=False)
    admin = {"Authorization": f"Bearer {(data_dir / 'admin.key').read_text().strip()}"}
    with TestClient(app) as client:
        partner = client.post(
            "/v1/partners",
            headers=admin,
            json={
                "name": "Bench",
                "currency": "EUR",
                "earn_rate": {"points": 1, "per_minor_units": 100},
                "allowance": 10**15,
            },
        ).json()
        enrol_in_bulk(data_dir, members, int(partner["partner_id"]), console)
        headers = {"Authorization": f"Bearer {partner['api_key']}", "Content-Type": "text/csv"}
        answer = client.post("/v1/batches", content=csv_file(0, records, members), headers=headers)
        if answer.status_code != 202:
            raise SystemExit(f"batch refused: {answer.status_code} {answer.text[:500]}")
        submitter = app.state.submitter
        profiler = cProfile.Profile(time.process_time)  # CPU, not wall: the machine is shared
        wall, cpu = time.perf_counter(), time.process_time()
        profiler.enable()
        while True:
            submitter.step()
            with runtime.sessions() as session:
                left = session.scalar(
                    select(func.count()).where(Operation.status.in_((Status.ACCEPTED, Status.SUBMITTED)))
                )
            if not left:
                break
        profiler.disable()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    runtime.close()
    console.print(
        f"drained {records:,} records in {wall:.2f} s wall, {cpu:.2f} s CPU:"
        f" {cpu * 1000 / records:.3f} CPU s per 1,000 records (load average {os.getloadavg()[0]:.2f})"
    )
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chain", choices=["anvil", "embedded"], default="anvil")
    parser.add_argument("--batches", type=int, default=3, help="CSV files submitted one after the other")
    parser.add_argument("--records", type=int, default=10_000, help="records per file")
    parser.add_argument("--members", type=int, default=2_000, help="members the earns cycle through")
    parser.add_argument("--no-raw", action="store_true", help="skip the raw earnBatch measurement")
    parser.add_argument("--json", help="write the figures to this file")
    parser.add_argument(
        "--profile", type=int, metavar="TOP", help="instead: cProfile the submitter draining --records in-process"
    )
    args = parser.parse_args()
    console = Console()
    if args.profile:
        profile_submitter(args.records, args.members, args.profile, console)
        return
    load_start = os.getloadavg()[0]
    data_dir = Path(tempfile.mkdtemp(prefix="bench-batches-")) / "data"
    node = AnvilNode() if args.chain == "anvil" else None
    port = free_port()
    command = [sys.executable, "-m", "gateway.cli", "serve", "--data-dir", str(data_dir), "--port", str(port)]
    if node:
        command += ["--network", node.url, "--submitter-process"]
    log = open(data_dir.parent / "gateway.log", "wb")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        stdout=log,
        stderr=log,
        env={**os.environ, "LOYALTY_GATEWAY__BATCH_MAX_OPERATIONS": "200"},
    )
    url = f"http://127.0.0.1:{port}"
    accept_seconds: list[float] = []
    accept_cpu: list[float] = []  # of the API process (with anvil the submitter has its own)
    try:
        partner = bench_partner(url, data_dir)
        enrol_in_bulk(data_dir, args.members, int(partner["partner_id"]), console)
        headers = {"Authorization": f"Bearer {partner['api_key']}", "Content-Type": "text/csv"}
        files = [csv_file(b, args.records, args.members) for b in range(args.batches)]
        batch_ids: list[str] = []
        start, cpu_start = time.perf_counter(), cpu_seconds(server.pid)
        with httpx.Client(base_url=url, timeout=120) as client:
            for body in files:
                t, cpu = time.perf_counter(), cpu_seconds(server.pid)
                response = client.post("/v1/batches", content=body, headers=headers)
                accept_seconds.append(time.perf_counter() - t)
                accept_cpu.append(cpu_seconds(server.pid) - cpu)
                answer = response.json()
                if response.status_code != 202 or answer["accepted"] != args.records:
                    raise SystemExit(f"batch refused: {response.status_code} {str(answer)[:500]}")
                batch_ids.append(answer["batch_id"])
                console.print(
                    f"batch of {args.records:,} records accepted in {accept_seconds[-1]:.2f} s"
                    f" ({accept_cpu[-1]:.2f} s of the API process's CPU)"
                )
            # How far the chain got while the files were being accepted: the rest is the drain.
            accepted_at = time.perf_counter()
            confirmed_by_then = sum(
                client.get(f"/v1/batches/{b}?limit=1", headers=headers).json()["counts"]["confirmed"] for b in batch_ids
            )
            confirmed = 0
            pending = list(batch_ids)
            while pending:
                view = client.get(f"/v1/batches/{pending[0]}?limit=1", headers=headers).json()
                if view["counts"]["rejected"]:
                    raise SystemExit(f"records rejected on-chain: {view['counts']}")
                if view["done"]:
                    confirmed += view["counts"]["confirmed"]
                    pending.pop(0)
                else:
                    # Each look counts a 10,000-line batch's statuses (a join of 10,000 rows):
                    # at 20 a second that was ~8% of the API process's samples, CPU the
                    # submitter and the chain share on this machine. Four a second.
                    time.sleep(POLL_SECONDS)
        confirmed_at = time.perf_counter()
        # The gateway process's CPU from the first POST to the last confirmation, less the
        # POSTs': with the embedded chain that is the submitter and the chain's mining.
        drain_cpu = cpu_seconds(server.pid) - cpu_start - sum(accept_cpu)
        # The submitter's own process (anvil, --submitter-process), from its start.
        submitter_cpu = sum(cpu_seconds(pid) for pid in gateway_pids(server.pid)[1:]) if node else float("nan")
    finally:
        server.terminate()
        server.wait(timeout=60)
        log.close()
        if node:
            node.close()
    raw = float("nan")
    if not args.no_raw:
        console.print("measuring our ledger's raw batched-earn rate on the same kind of chain (no gateway)...")
        raw = raw_earn_rate(args.chain, 10)
    rate = confirmed / (confirmed_at - start)
    drain_rate = (confirmed - confirmed_by_then) / max(1e-9, confirmed_at - accepted_at)
    figures = {
        "chain": args.chain,
        "batches": args.batches,
        "records_per_batch": args.records,
        "members": args.members,
        "accept_seconds": [round(s, 2) for s in accept_seconds],
        "accept_cpu_seconds": [round(s, 2) for s in accept_cpu],
        "confirmed": confirmed,
        "confirmed_per_s": round(rate, 1),
        "drain_cpu_s_per_1000": round(drain_cpu * 1000 / max(1, confirmed), 3),
        "submitter_cpu_s_per_1000": round(submitter_cpu * 1000 / max(1, confirmed), 3),
        # After the last POST: the submitter and the chain alone, against the raw rate.
        "confirmed_during_intake": confirmed_by_then,
        "drain_confirmed_per_s": round(drain_rate, 1),
        "drain_vs_raw": round(drain_rate / raw, 2) if raw == raw else None,
        "raw_earn_per_s": round(raw, 1),
        "confirmed_vs_raw": round(rate / raw, 2) if raw == raw else None,
        "load_avg_start": round(load_start, 2),
        "load_avg_end": round(os.getloadavg()[0], 2),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, CPython {platform.python_version()}",
        "date": datetime.now(UTC).date().isoformat(),
        "time_utc": datetime.now(UTC).strftime("%H:%M"),
    }
    for k, v in figures.items():
        console.print(f"{k:>18}: {v}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
