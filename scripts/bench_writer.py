"""CPU of the group-commit writer alone: managed earns accepted through the writer thread
(SQLite in a temporary data directory, embedded chain), no HTTP and no submitter. Prints the
writer thread's CPU time per earn and the rate.

    .venv/bin/python scripts/bench_writer.py [--earns 3000] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import tempfile
import threading
import time
from pathlib import Path

from sqlalchemy.orm import Session

from gateway.accounts.members import create_member
from gateway.accounts.partners import create_partner
from gateway.app.bootstrap import open_runtime
from gateway.app.runtime import Runtime
from gateway.core.config import get_settings
from gateway.core.security import Caller
from gateway.operations.accept import Prepared, accept_earn, prepare_earn, prepare_earn_cached
from gateway.operations.idempotency import Response, idempotent_async

MEMBERS = 20


def writer_cpu_seconds() -> float:
    """CPU time of this process's thread named `writer` (Linux /proc)."""
    writer = next(t for t in threading.enumerate() if t.name == "writer")
    fields = Path(f"/proc/self/task/{writer.native_id}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def accept(runtime: Runtime, caller: Caller, run: str, earns: int, concurrency: int) -> None:
    numbers = iter(range(earns))

    async def till() -> None:
        for n in numbers:
            member_id = f"m{n % MEMBERS}"
            body = {"member_id": member_id, "receipt_id": f"{run}-{n}", "amount_minor": 1000, "currency": "EUR"}
            prepared = prepare_earn_cached(runtime, caller=caller, member_id=member_id, self_signed=False)
            if prepared is None:
                prepared = prepare_earn(runtime, caller=caller, member_id=member_id, self_signed=False)

            def effect(session: Session, body: dict[str, object] = body, prepared: Prepared = prepared) -> Response:
                return accept_earn(
                    runtime,
                    session,
                    caller=caller,
                    member_id=str(body["member_id"]),
                    receipt_id=str(body["receipt_id"]),
                    amount_minor=1000,
                    currency="EUR",
                    issued_at=None,
                    partner_signature=None,
                    prepared=prepared,
                )

            # Every other request carries an Idempotency-Key, as retrying tills send them.
            key = f"{run}-{n}" if n % 2 else None
            await idempotent_async(
                runtime, scope="bench", key=key, body=body, effect=effect, refuses_before_writing=True
            )

    await asyncio.gather(*(till() for _ in range(concurrency)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--earns", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    runtime = open_runtime(get_settings(), data_dir=Path(tempfile.mkdtemp(prefix="bench-writer-")) / "data", log=False)
    try:
        with runtime.writes.begin() as session:
            partner = create_partner(
                runtime,
                session,
                name="Bench",
                currency="EUR",
                rate_points=1,
                rate_per_minor_units=100,
                allowance=10**15,
                signer_address=None,
            )
        caller = Caller("bench", "partner", partner["partner_id"])
        with runtime.writes.begin() as session:
            for i in range(MEMBERS):
                address = "0x" + secrets.token_bytes(20).hex()
                create_member(runtime, session, caller=caller, member_id=f"m{i}", address=address, pin=None)
        runtime.writer.start()
        asyncio.run(accept(runtime, caller, "warm", 200, args.concurrency))
        cpu, groups, jobs, start = (
            writer_cpu_seconds(),
            runtime.writer.batches,
            runtime.writer.jobs,
            time.perf_counter(),
        )
        asyncio.run(accept(runtime, caller, "run", args.earns, args.concurrency))
        elapsed = time.perf_counter() - start
        cpu = writer_cpu_seconds() - cpu
        groups, jobs = runtime.writer.batches - groups, runtime.writer.jobs - jobs
        rate = args.earns / elapsed
        print(
            f"{args.earns} earns in {elapsed:.2f} s ({rate:.0f}/s), {groups} groups of {jobs / groups:.1f} on average"
        )
        print(f"writer thread CPU per earn: {1000 * cpu / args.earns:.2f} ms")
    finally:
        runtime.close()


if __name__ == "__main__":
    main()
