"""Speed of the audit's replay once the events are fetched: operations verified per second.

Builds a stream of decoded ledger events (earns, redemptions, reversals, transfers, month
changes and expiry sweeps across many members and months) and times the same `Replay` that
`loyalty audit verify` uses. Fetching from a node is not included: that is the node's speed.

    .venv/bin/python scripts/bench_audit.py [--operations 500000] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import time
from datetime import UTC, datetime

from rich.console import Console
from rich.progress import Progress

from gateway.audit.verify import Replay
from gateway.chain.ledger import LedgerEvent
from gateway.ledger.rules import month_of

ZERO = "0x0000000000000000000000000000000000000000"


def ev(name: str, **args: object) -> LedgerEvent:
    return LedgerEvent(name, args, 0, "0x", 0)


def stream(operations: int, members: int, seed: int = 7) -> list[tuple[LedgerEvent, int]]:
    rng = random.Random(seed)
    month = month_of(int(datetime(2026, 1, 15, tzinfo=UTC).timestamp()))
    addresses = [f"0x{i:040x}" for i in range(1, members + 1)]
    events: list[tuple[LedgerEvent, int]] = [
        (ev("TiersSet", tiers=[(0, 10_000), (500, 12_500), (2_000, 15_000)]), month),
        (ev("ExpiryPolicySet", months=12), month),
    ]
    for pid in (1, 2, 3):
        events += [
            (ev("PartnerAdded", partnerId=pid, signer=ZERO, currency=b"EUR"), month),
            (ev("PartnerUpdated", partnerId=pid, signer=ZERO, ratePoints=1, ratePerMinorUnits=100), month),
            (ev("AllowanceSet", partnerId=pid, allowance=10**15), month),
        ]
    # A tiny model of balances to emit only valid operations (the replay checks them).
    shadow = Replay()
    for e, m in events:
        shadow.apply(e, m)
    earns: list[tuple[int, bytes, str, int]] = []
    per_month = max(1, operations // 36)
    for n in range(operations):
        if n and n % per_month == 0:
            month += 1
        kind = rng.random()
        member = rng.choice(addresses)
        live = shadow.model.balance(member, month)
        if kind < 0.75 or live < 10:
            pid = rng.randint(1, 3)
            spend = rng.randint(100, 50_000)
            multiplier = shadow.model.tiers[shadow.model.tier_index(member, month)][1]
            points = shadow.model.points_for(shadow.model.partners[pid], spend, multiplier)
            ref = n.to_bytes(32, "big")
            e = ev(
                "Earned",
                partnerId=pid,
                member=member,
                receiptRef=ref,
                spend=spend,
                points=points,
                expiryMonth=month + 12,
            )
            earns.append((pid, ref, member, points))
        elif kind < 0.9:
            e = ev(
                "Redeemed",
                partnerId=rng.randint(1, 3),
                member=member,
                receiptRef=b"\0" * 32,
                points=rng.randint(1, live),
            )
        else:
            pid, ref, owner, issued = rng.choice(earns)
            done = shadow.reversed.get((pid, ref), 0)
            if issued - done < 1 or shadow.model.balance(owner, month) < 1:
                continue
            e = ev("Reversed", partnerId=pid, member=owner, receiptRef=b"\1" * 32, points=1, earnReceiptRef=ref)
        shadow.apply(e, month)
        events.append((e, month))
    return events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--operations", type=int, default=500_000)
    parser.add_argument("--members", type=int, default=20_000)
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()
    console = Console()
    console.print(f"building {args.operations:,} operations over {args.members:,} members...")
    events = stream(args.operations, args.members)
    replay = Replay()
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("replaying", total=len(events))
        start = time.perf_counter()
        for i, (event, month) in enumerate(events):
            replay.apply(event, month)
            if i % 50_000 == 0:
                progress.update(task, completed=i)
        elapsed = time.perf_counter() - start
    assert not replay.discrepancies, replay.discrepancies[:3]
    figures = {
        "operations": replay.operations,
        "events": len(events),
        "seconds": round(elapsed, 2),
        "operations_per_s": round(replay.operations / elapsed),
        "machine": f"{platform.machine()} CPython {platform.python_version()}",
        "date": datetime.now(UTC).date().isoformat(),
    }
    for k, v in figures.items():
        console.print(f"{k:>17}: {v}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(figures, fh, indent=2)


if __name__ == "__main__":
    main()
