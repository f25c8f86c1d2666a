"""Raw `earnBatch` on the embedded chain: py-evm and revm in the same run, and their gas.

Each engine gets its own chain kept in a file, as `loyalty serve` keeps it (pass --memory
for chains in memory), the same deployment and the same signed earns (both engines share
the chain id and the development keys, so the transactions are byte for byte the same).
Batches of --size earns go through `gateway.chain.ledger.Ledger.earn_batch` (sign, send,
wait for the receipt, decode the events) with a fixed gas limit, as the gateway's raw
benchmark does: first to new members, then again to the same (now existing) members. The
engines take turns batch by batch, so both see the same machine load. Gas must be equal.

    .venv/bin/python scripts/bench_chain.py [--batches 3] [--size 100] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.chain.backends import ChainBackend, EmbeddedChain  # noqa: E402
from gateway.chain.ledger import SignedEarn  # noqa: E402
from tests.support import World, member  # noqa: E402

ENGINES = ("pyevm", "revm")


def load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def earns(world: World, batch: int, size: int) -> list[SignedEarn]:
    return [world.earn_op(1 + (i % 3), member(f"bench-{batch}-{i}")[1], 1_000 + i) for i in range(size)]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--batches", type=int, default=3, help="timed batches per engine and kind (new, existing)")
    parser.add_argument("--size", type=int, default=100, help="earns per batch")
    parser.add_argument("--memory", action="store_true", help="chains in memory instead of files")
    parser.add_argument("--engines", default=",".join(ENGINES), help="comma-separated: pyevm,revm")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]

    workdir = Path(tempfile.mkdtemp(prefix="bench-chain-"))
    started = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "load": load()}
    worlds: dict[str, World] = {}
    for engine in engines:
        path = None if args.memory else workdir / f"{engine}.sqlite"
        chain: ChainBackend = EmbeddedChain(path, engine=engine)
        worlds[engine] = World.create(chain)
        # warm-up: one-time slots (the month's supply, the partner's totals) and code paths
        worlds[engine].ledger.earn_batch(worlds[engine].relayer, earns(worlds[engine], -1, 5), gas=25_000_000)

    rates: dict[str, dict[str, list[float]]] = {e: {"new": [], "existing": []} for e in engines}
    gas: dict[str, dict[str, list[int]]] = {e: {"new": [], "existing": []} for e in engines}
    for kind in ("new", "existing"):
        for batch in range(args.batches):
            for engine in engines:
                world = worlds[engine]
                ops = earns(world, batch, args.size)  # "existing": the members of batch `batch` again
                t0 = time.perf_counter()
                result = world.ledger.earn_batch(world.relayer, ops, gas=25_000_000)
                elapsed = time.perf_counter() - t0
                assert len(result.named("Earned")) == args.size, result.rejections()
                rates[engine][kind].append(args.size / elapsed)
                gas[engine][kind].append(result.gas_used)
                print(
                    f"{engine:6} {kind:8} batch {batch}: {args.size / elapsed:8.0f} earns/s, gas {result.gas_used:,}",
                    flush=True,
                )
    for world in worlds.values():
        world.chain.close()

    same_gas = all(gas[e] == gas[engines[0]] for e in engines)
    out: dict[str, Any] = {
        "script": "scripts/bench_chain.py",
        **started,
        "load_after": load(),
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "batch_size": args.size,
        "batches": args.batches,
        "storage": "memory" if args.memory else "file",
        "earns_per_s": {e: {k: round(statistics.median(v), 1) for k, v in rates[e].items()} for e in engines},
        "earns_per_s_all": {e: {k: [round(x, 1) for x in v] for k, v in rates[e].items()} for e in engines},
        "gas": gas,
        "gas_identical": same_gas,
    }
    if "pyevm" in engines and "revm" in engines:
        out["ratio_revm_over_pyevm"] = {
            k: round(out["earns_per_s"]["revm"][k] / out["earns_per_s"]["pyevm"][k], 1) for k in ("new", "existing")
        }
    print(json.dumps({k: v for k, v in out.items() if k != "earns_per_s_all"}, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    if not same_gas:
        sys.exit("gas differs between the engines")


if __name__ == "__main__":
    main()
