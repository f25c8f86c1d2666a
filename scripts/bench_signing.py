"""What a gateway spends per operation on its EIP-712 work (partners/signing.py): a receipt's
reference, an earn's struct hash, its digest, and digest plus signature, each in microseconds
(best of `--repeat` rounds of `--count` calls, so a busy machine's pauses drop out).

    .venv/bin/python scripts/bench_signing.py [--count 5000] [--repeat 5] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from datetime import UTC, datetime

from partners.signing import Domain, EarnMessage, Receipt, new_receipt_salt, sign

DOMAIN = Domain(31337, "0x" + "ab" * 20)
MEMBER = "0x" + "cd" * 20


def best_us(call: Callable[[int], object], count: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for i in range(count):
            call(i)
        best = min(best, (time.perf_counter() - start) / count * 1e6)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=5_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()
    key, ref = os.urandom(32), os.urandom(32)

    def earn(i: int) -> EarnMessage:
        return EarnMessage(1, MEMBER, 1_000 + i, ref, i, 2**40)

    cases: dict[str, Callable[[int], object]] = {
        "receipt_ref_us": lambda i: Receipt(
            kind="earn",
            partner_id=1,
            receipt_id=f"B-{i}",
            member_id=f"m{i}",
            amount_minor=1_000 + i,
            currency="EUR",
            issued_at="2026-12-02T00:00:00+00:00",
            salt=new_receipt_salt(),
        ).ref(),
        "struct_hash_us": lambda i: earn(i).struct_hash(),
        "digest_us": lambda i: DOMAIN.digest(earn(i)),
        "digest_and_signature_us": lambda i: sign(DOMAIN, earn(i), key).hex(),
    }
    figures: dict[str, object] = {
        name: round(best_us(call, args.count, args.repeat), 1) for name, call in cases.items()
    }
    for name, value in figures.items():
        print(f"{name:>24}: {value}")
    figures.update(
        load_avg=round(os.getloadavg()[0], 2),
        machine=f"{os.cpu_count()} cores, {platform.machine()}, CPython {platform.python_version()}",
        time_utc=datetime.now(UTC).strftime("%Y-%m-%d %H:%M"),
    )
    if args.json:
        with open(args.json, "w") as out:
            json.dump(figures, out, indent=2)


if __name__ == "__main__":
    main()
