"""Memory of the gateway's per-member caches when full: the bound a gateway process's
resident memory grows to, whatever the coalition's size (gateway.member_cache_entries).

Fills a runtime's member, tier and key caches the way earns and redemptions do, for more
members than the bound, and prints what they hold (tracemalloc: Python's own allocations).

    .venv/bin/python scripts/bench_caches.py [--entries 100000] [--members 1000000] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

from eth_utils import to_checksum_address

from gateway.app.cache import BoundedCache
from gateway.app.runtime import Runtime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000, help="the bound (gateway.member_cache_entries)")
    parser.add_argument("--members", type=int, default=1_000_000, help="distinct members put into the caches")
    parser.add_argument("--custodial-share", type=float, default=0.1, help="of members whose key is cached")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()

    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    members: BoundedCache[str, tuple[str, bool]] = BoundedCache(args.entries)
    tiers: BoundedCache[str, tuple[int, float]] = BoundedCache(args.entries)
    keys: BoundedCache[str, str] = BoundedCache(min(args.entries, Runtime.KEY_CACHE_ENTRIES))
    peak = 0
    for i in range(args.members):
        address = to_checksum_address(secrets.token_bytes(20))
        custodial = i % round(1 / args.custodial_share) == 0 if args.custodial_share else False
        members.put(f"m{i}", (address, custodial))
        tiers.put(address, (i % 4, time.monotonic()))
        if custodial:
            # A keystore JSON under the KEK (~500 bytes) -> the 0x-hex private key.
            keys.put("k" * 460 + secrets.token_hex(16), "0x" + secrets.token_hex(32))
        if i % 50_000 == 0:
            peak = max(peak, tracemalloc.get_traced_memory()[0] - base)
    held = tracemalloc.get_traced_memory()[0] - base
    peak = max(peak, held)
    figures = {
        "entries_bound": args.entries,
        "members_put": args.members,
        "member_entries": len(members),
        "tier_entries": len(tiers),
        "key_entries": len(keys),
        "held_mib": round(held / 2**20, 1),
        "peak_mib": round(peak / 2**20, 1),
        "bytes_per_member": round(held / max(1, len(members))),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, CPython {platform.python_version()}",
        "date": datetime.now(UTC).date().isoformat(),
    }
    for k, v in figures.items():
        print(f"{k:>16}: {v}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
