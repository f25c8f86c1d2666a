"""Earn throughput of the whole gateway over HTTP, beside the chain's raw batched-mint rate.

Starts a chain (anvil, or the embedded one inside the gateway), a `loyalty serve` process,
and drives POST /v1/earn from a separate process with concurrent clients for a fixed time.
Prints accepted/s, confirmed/s (first acceptance to last confirmation), the acceptance
latency p50/p99 and the gateway's CPU time per earn (all its processes, from the first
request until the last earn is confirmed); then the rate of a plain OpenZeppelin batched
mint and of our own signed `earnBatch` on fresh chains of the same kind, with no gateway.

The defaults are the best configuration a user would run: anvil, the submitter in a process
of its own, wrk as the driver when it is installed (else httpx, said so in the output).

    .venv/bin/python scripts/bench_gateway.py [--chain anvil|embedded] [--json FILE]
    .venv/bin/python scripts/bench_gateway.py --members 1000000   # enrolled in bulk, straight into the database
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from eth_abi import encode
from eth_utils import keccak, to_checksum_address
from hexbytes import HexBytes
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from gateway.chain.backends import AnvilNode, ChainBackend, EmbeddedChain, free_port
from gateway.chain.ledger import Ledger, Sender, SignedEarn, artifact
from gateway.core.config import REPO_ROOT, get_settings
from partners.signing import EarnMessage, address_of, sign

MEMBERS = 500
BULK_MEMBERS = 5_000  # more members than this are written straight into the database
WRK_SCRIPT = Path(__file__).with_name("bench_earn.lua")


def raw_mint_rate(kind: str, seconds: float) -> float:
    """Plain OpenZeppelin mints per second in batches of 100, straight to the chain."""
    chain: ChainBackend = AnvilNode() if kind == "anvil" else EmbeddedChain()
    try:
        sender = Sender(chain.w3, chain.dev_keys[0])
        token = sender.send(None, HexBytes(artifact("PlainMintToken")["bytecode"]))["contractAddress"]
        selector = keccak(text="mintBatch(address[],uint256[])")[:4]
        minted, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            to = ["0x" + secrets.token_bytes(20).hex() for _ in range(100)]
            data = selector + encode(["address[]", "uint256[]"], [to, [10] * 100])
            sender.send(token, data, gas=6_000_000)
            minted += 100
        return minted / (time.perf_counter() - start)
    finally:
        chain.close()


def raw_earn_rate(kind: str, seconds: float, batch: int = 200) -> float:
    """Our own ledger's signed earns per second in batches, straight to the chain (no gateway):
    the ceiling the gateway's confirmed rate can approach. Batches are signed before the clock runs."""
    chain: ChainBackend = AnvilNode() if kind == "anvil" else EmbeddedChain()
    try:
        sender = Sender(chain.w3, chain.dev_keys[0])
        ledger = Ledger.deploy(sender, get_settings().coalition)
        partner_key = "0x" + keccak(text="bench-gateway:partner").hex()
        pid = ledger.add_partner(
            sender,
            signer=address_of(partner_key),
            rate_points=1,
            rate_per_minor_units=100,
            currency="EUR",
            allowance=10**15,
        )
        members = ["0x" + secrets.token_bytes(20).hex() for _ in range(MEMBERS)]
        nonce = iter(range(1, 10**9))

        def signed_batch() -> list[SignedEarn]:
            ops = []
            for _ in range(batch):
                n = next(nonce)
                m = EarnMessage(pid, members[n % MEMBERS], 1000 + n % 5000, keccak(text=f"raw-{n}"), n, 2**40)
                ops.append(SignedEarn(m, sign(ledger.domain, m, partner_key)))
            return ops

        batches = [signed_batch() for _ in range(max(2, int(seconds * 1500 / batch)))]
        ledger.earn_batch(sender, batches.pop(), gas=25_000_000)  # warm-up: first-touch storage
        earned, start = 0, time.perf_counter()
        while batches and time.perf_counter() - start < seconds:
            result = ledger.earn_batch(sender, batches.pop(), gas=25_000_000)
            assert not result.rejections(), result.rejections()
            earned += batch
        return earned / (time.perf_counter() - start)
    finally:
        chain.close()


def bench_partner(url: str, data_dir: Path) -> dict[str, Any]:
    """Waits for `loyalty serve` at `url` to answer /healthz, then onboards the benchmark's
    partner (1 point per EUR, an allowance no run spends) with the data dir's admin key."""
    for _ in range(600):
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    admin = {"Authorization": f"Bearer {(data_dir / 'admin.key').read_text().strip()}"}
    terms = {"name": "Bench", "currency": "EUR", "earn_rate": {"points": 1, "per_minor_units": 100}}
    answer: dict[str, Any] = httpx.post(
        f"{url}/v1/partners", headers=admin, timeout=30, json={**terms, "allowance": 10**15}
    ).json()
    return answer


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def gateway_pids(pid: int) -> list[int]:
    """The gateway process and its children (--workers, --submitter-process)."""
    return [pid, *(int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split())]


def gateway_cpu_seconds(pid: int) -> float:
    """CPU time of the gateway process and its worker and submitter processes."""
    return sum(cpu_seconds(p) for p in gateway_pids(pid))


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    """Resident memory of one process (VmRSS: now; VmHWM: its peak), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def sample_rss(pid: int, every: float, samples: list[dict[str, float]], done: threading.Event) -> None:
    """The gateway's resident memory every `every` seconds while it is driven: the first
    process (the API's) and the others (workers, the submitter) apart."""
    start = time.perf_counter()
    while not done.wait(every):
        pids = gateway_pids(pid)
        first, others = rss_mib(pids[0]), sum(rss_mib(p) for p in pids[1:])
        samples.append(
            {
                "s": round(time.perf_counter() - start, 1),
                "first_mib": round(first, 1),
                "others_mib": round(others, 1),
                "total_mib": round(first + others, 1),
            }
        )


def enrol_in_bulk(data_dir: Path, count: int, partner_id: int, console: Console) -> None:
    """Members m0..m{count-1} written straight into the gateway's database (self-custody, a
    random address each), in transactions of 50,000 rows: enrolling a million through the
    API would take an hour. The gateway reads a member it has not seen from the database."""
    from sqlalchemy import insert

    from gateway.db.models import Member
    from gateway.db.session import database_url, make_engine

    engine = make_engine(database_url(data_dir, get_settings().database_url), writer=True)
    now = datetime.now(UTC)
    chunk = 50_000
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("enrolling members in bulk", total=count)
        for first in range(0, count, chunk):
            rows = [
                {
                    "member_id": f"m{i}",
                    "address": to_checksum_address(secrets.token_bytes(20)),
                    "custodial": False,
                    "failed_pin_attempts": 0,
                    "locked": False,
                    "next_nonce": 1,
                    "enrolled_by": partner_id,
                    "created_at": now,
                }
                for i in range(first, min(count, first + chunk))
            ]
            with engine.begin() as conn:
                conn.execute(insert(Member), rows)
            progress.advance(task, len(rows))
    engine.dispose()


async def drive(url: str, key: str, seconds: float, concurrency: int, members: int) -> tuple[list[float], float, float]:
    latencies: list[float] = []
    counter = iter(range(10**9))
    headers = {"Authorization": f"Bearer {key}"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    start = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=30) as client:

        async def worker() -> None:
            while time.perf_counter() - start < seconds:
                n = next(counter)
                body = {
                    "member_id": f"m{n % members}",
                    "receipt_id": f"B-{n}",
                    "amount_minor": 1000 + n % 5000,
                    "currency": "EUR",
                }
                t = time.perf_counter()
                r = await client.post("/v1/earn", json=body)
                if r.status_code != 202:
                    raise SystemExit(f"earn refused: {r.status_code} {r.text}")
                latencies.append(time.perf_counter() - t)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, start, time.perf_counter()


def drive_wrk(url: str, key: str, seconds: float, concurrency: int, members: int) -> dict[str, float]:
    """The same load from wrk (C, two threads): the driver costs the shared cores far less
    than httpx does. Figures come from scripts/bench_earn.lua's one JSON line."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")
    out = subprocess.run(
        ["wrk", "-t2", f"-c{concurrency}", f"-d{round(seconds)}s", "--timeout", "30s", "-s", str(WRK_SCRIPT), url],
        env={**os.environ, "KEY": key, "MEMBERS": str(members), "THREADS": "2"},
        capture_output=True,
        text=True,
        check=True,
    )
    figures: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    if figures["refused"] or figures["errors"]:
        raise SystemExit(f"earns refused or failed under wrk: {figures}\n{out.stderr}")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chain", choices=["anvil", "embedded"], default="anvil")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1, help="gateway processes (loyalty serve --workers)")
    parser.add_argument(
        "--submitter-process",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="loyalty serve --submitter-process (default: on for anvil; the embedded chain cannot)",
    )
    parser.add_argument(
        "--driver", choices=["httpx", "wrk"], default=None, help="what sends the earns (default: wrk if installed)"
    )
    parser.add_argument("--members", type=int, default=MEMBERS, help="members the earns cycle through")
    parser.add_argument(
        "--sample-rss", type=float, default=0, metavar="SECONDS", help="also record the gateway's memory this often"
    )
    parser.add_argument("--json", help="write the figures to this file")
    parser.add_argument("--no-raw", action="store_true", help="skip the raw-chain measurements")
    parser.add_argument("--profile", help="run the gateway under py-spy and write its collapsed stacks here")
    args = parser.parse_args()
    console = Console()
    if args.submitter_process is None:
        args.submitter_process = args.chain == "anvil"
    if args.driver is None:
        args.driver = "wrk" if shutil.which("wrk") else "httpx"
        if args.driver == "httpx":
            console.print("wrk is not installed (Debian: apt-get install wrk): driving with httpx, which costs a core")
    load_start = os.getloadavg()[0]

    data_dir = Path(tempfile.mkdtemp(prefix="bench-gateway-")) / "data"
    node = AnvilNode() if args.chain == "anvil" else None
    port = free_port()
    command = [sys.executable, "-m", "gateway.cli", "serve", "--data-dir", str(data_dir), "--port", str(port)]
    if node:
        command += ["--network", node.url, "--workers", str(args.workers)]
        if args.submitter_process:
            command.append("--submitter-process")
    if args.profile:
        if not (Path(sys.executable).parent / "py-spy").exists():
            raise SystemExit("--profile needs py-spy in this virtualenv: .venv/bin/pip install py-spy")
        spy = [
            str(Path(sys.executable).parent / "py-spy"),
            "record",
            "--format",
            "raw",
            "--rate",
            "100",
            "--nonblocking",
        ]
        command = [*spy, "--subprocesses", "--threads", "-o", args.profile, "--", *command]
    log = open(data_dir.parent / "gateway.log", "wb")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        stdout=log,
        stderr=log,
        env={
            **os.environ,
            "LOYALTY_GATEWAY__BATCH_MAX_OPERATIONS": "200",
            # One partner key sends everything here: lift its per-key limit out of the way.
            "LOYALTY_GATEWAY__RATE_LIMIT_PER_SECOND": "1000000",
        },
    )
    url = f"http://127.0.0.1:{port}"
    try:
        partner = bench_partner(url, data_dir)
        key = partner["api_key"]
        if args.members > BULK_MEMBERS:
            enrol_in_bulk(data_dir, args.members, int(partner["partner_id"]), console)
        else:
            with Progress(console=console, transient=True) as progress:
                task = progress.add_task("enrolling members", total=args.members)
                with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
                    for i in range(args.members):
                        client.post(
                            "/v1/members", json={"member_id": f"m{i}", "address": "0x" + secrets.token_bytes(20).hex()}
                        )
                        progress.advance(task)
        rss_before = sum(rss_mib(p) for p in gateway_pids(server.pid))
        samples: list[dict[str, float]] = []
        sampling = threading.Event()
        if args.sample_rss > 0:
            threading.Thread(
                target=sample_rss, args=(server.pid, args.sample_rss, samples, sampling), daemon=True
            ).start()
        console.print(f"driving earns for {args.seconds:.0f} s with {args.concurrency} concurrent clients...")
        cpu_before = gateway_cpu_seconds(server.pid), (cpu_seconds(node.process.pid) if node else 0.0)
        if args.driver == "wrk":
            start = time.perf_counter()
            driven = drive_wrk(url, key, args.seconds, args.concurrency, args.members)
            end = time.perf_counter()
            accepted = int(driven["requests"])
            p50, p99 = driven["p50_ms"], driven["p99_ms"]
        else:
            latencies, start, end = asyncio.run(drive(url, key, args.seconds, args.concurrency, args.members))
            accepted = len(latencies)
            quantiles = statistics.quantiles(latencies, n=100)
            p50, p99 = quantiles[49] * 1000, quantiles[98] * 1000
        sampling.set()
        drive_cpu = gateway_cpu_seconds(server.pid) - cpu_before[0]
        node_cpu = (cpu_seconds(node.process.pid) if node else 0.0) - cpu_before[1]
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("waiting for confirmations", total=accepted)
            while True:
                metrics = httpx.get(f"{url}/metrics", timeout=30).text
                depth = int(
                    next(line.split()[1] for line in metrics.splitlines() if line.startswith("loyalty_queue_depth "))
                )
                progress.update(task, completed=accepted - depth)
                if depth == 0:
                    break
                time.sleep(0.05)
        confirmed_at = time.perf_counter()
        # Until the last earn is confirmed: the submitter's work for the tail counts too.
        gateway_cpu = gateway_cpu_seconds(server.pid) - cpu_before[0]
        pids = gateway_pids(server.pid)
        rss = {"rss_mib": sum(rss_mib(p) for p in pids), "peak_rss_mib": sum(rss_mib(p, "VmHWM") for p in pids)}
        load_end = os.getloadavg()[0]
        confirmed = int(
            next(
                line.split()[1]
                for line in metrics.splitlines()
                if line.startswith('loyalty_operations{status="confirmed"}')
            )
        )
        sizes = next(line for line in metrics.splitlines() if line.startswith("loyalty_batch_size_sum"))
        batches = next(line for line in metrics.splitlines() if line.startswith("loyalty_batch_size_count"))
    finally:
        if args.profile:
            server.send_signal(signal.SIGINT)  # py-spy writes its stacks on SIGINT and stops the gateway
        else:
            server.terminate()
        server.wait(timeout=60)
        log.close()
        if node:
            node.close()

    raw = raw_earn = float("nan")
    if not args.no_raw:
        console.print("measuring the raw batched-mint rate of the same kind of chain (no gateway)...")
        raw = raw_mint_rate(args.chain, 10)
        console.print("measuring our ledger's raw batched-earn rate on the same kind of chain (no gateway)...")
        raw_earn = raw_earn_rate(args.chain, 10)
    figures = {
        "chain": args.chain,
        "seconds": args.seconds,
        "concurrency": args.concurrency,
        "workers": args.workers,
        "submitter_process": args.submitter_process,
        "driver": args.driver,
        "members": args.members,
        "accepted": accepted,
        "confirmed": confirmed,
        "accepted_per_s": round(accepted / (end - start), 1),
        "confirmed_per_s": round(confirmed / (confirmed_at - start), 1),
        "accept_p50_ms": round(p50, 1),
        "accept_p99_ms": round(p99, 1),
        "raw_mint_per_s": round(raw, 1),
        "raw_earn_per_s": round(raw_earn, 1),
        # Per earn the gateway accepted: wrk does not count the answers still on their way
        # when it stops, the gateway does (all of them are confirmed).
        "gateway_cpu_ms_per_earn": round(1000 * gateway_cpu / max(1, accepted, confirmed), 2),
        "gateway_cpu_cores": round(drive_cpu / (end - start), 2),
        "gateway_rss_mib_before": round(rss_before, 1),
        "gateway_rss_mib": round(rss["rss_mib"], 1),
        "gateway_peak_rss_mib": round(rss["peak_rss_mib"], 1),
        "node_cpu_cores": round(node_cpu / (end - start), 2),
        "batches": int(batches.split()[1]),
        "mean_batch_size": round(int(sizes.split()[1]) / max(1, int(batches.split()[1])), 1),
        "load_avg_start": round(load_start, 2),
        "load_avg_end": round(load_end, 2),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, CPython {platform.python_version()}",
        "date": datetime.now(UTC).date().isoformat(),
        "time_utc": datetime.now(UTC).strftime("%H:%M"),
    }
    for k, v in figures.items():
        console.print(f"{k:>18}: {v}")
    if samples:
        figures["rss_samples"] = samples
        table = Table("s", "API MiB", "others MiB", "all MiB", title="the gateway's resident memory while driven")
        for sample in samples:
            table.add_row(*(f"{sample[k]:,.1f}" for k in ("s", "first_mib", "others_mib", "total_mib")))
        console.print(table)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
        console.print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
