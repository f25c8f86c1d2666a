"""Latency of the index's read queries with a million operations in it: a member's activity
(GET /v1/members/{id}/activity) and a partner's operations (GET /v1/partners/{id}/operations).

Builds an index of its own (SQLite in a temporary folder, or a fresh database on a PostgreSQL
server that is dropped afterwards) at the newest migration, writes partners, members and
operations straight into it, then times the same domain functions the routes call, each in
a session of its own as a request has, and prints p50/p99/max per kind of query.

    .venv/bin/python scripts/bench_queries.py [--operations 1000000] [--members 100000] [--json FILE]
    .venv/bin/python scripts/bench_queries.py --postgres postgresql+psycopg://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress
from sqlalchemy import create_engine, event, insert, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from gateway.core.security import Caller
from gateway.db.models import Base, Member, Partner
from gateway.db.session import make_engine, make_sessionmaker, migrate
from gateway.operations import feed, queries

OPS = Base.metadata.tables["operations"]
CHUNK = 20_000
HEAVY = "m-heavy"  # one member with far more history than the rest
HEAVY_SHARE = 0.002  # of all operations (2,000 in a million)
START = datetime(2026, 1, 1, tzinfo=UTC)


def fill(url: str, *, operations: int, members: int, partners: int, console: Console) -> None:
    """Partners, members and operations written straight into a migrated database: partner 1
    takes 40% of the operations, the rest share the others; members are drawn uniformly, but
    for one heavy member; 90% earns, 8% redemptions, 2% reversals; 97% confirmed, 2%
    rejected, the newest 1% still accepted; accepted over 365 days in acceptance order."""
    engine = make_engine(url, writer=True)
    rng = random.Random(15)
    now = START
    with engine.begin() as conn:
        conn.execute(
            insert(Partner),
            [
                {
                    "id": p,
                    "name": f"Partner {p}",
                    "currency": "EUR",
                    "rate_points": 1,
                    "rate_per_minor_units": 100,
                    "signer_address": f"0x{p:040x}",
                    "managed": True,
                    "next_nonce": 1,
                    "created_at": now,
                }
                for p in range(1, partners + 1)
            ],
        )
    member_ids = [f"m{i}" for i in range(members)] + [HEAVY]
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("members", total=len(member_ids))
        for first in range(0, len(member_ids), CHUNK):
            rows = [
                {
                    "member_id": m,
                    "address": f"0x{first + i:040x}",
                    "custodial": False,
                    "failed_pin_attempts": 0,
                    "locked": False,
                    "next_nonce": 1,
                    "enrolled_by": 1,
                    "created_at": now,
                }
                for i, m in enumerate(member_ids[first : first + CHUNK])
            ]
            with engine.begin() as conn:
                conn.execute(insert(Member), rows)
            progress.advance(task, len(rows))
        task = progress.add_task("operations", total=operations)
        step = timedelta(days=365) / operations
        for first in range(0, operations, CHUNK):
            rows = []
            for n in range(first, min(operations, first + CHUNK)):
                r = rng.random()
                kind = "earn" if r < 0.90 else "redemption" if r < 0.98 else "reversal"
                status = "accepted" if n >= operations * 0.99 else "rejected" if rng.random() < 0.02 else "confirmed"
                member = HEAVY if rng.random() < HEAVY_SHARE else member_ids[rng.randrange(members)]
                at = START + step * n
                rows.append(
                    {
                        "id": f"{n:032x}",
                        "kind": kind,
                        "partner_id": 1 if rng.random() < 0.4 else rng.randint(2, partners),
                        "member_id": member,
                        "receipt_id": f"R-{n}",
                        "status": status,
                        "receipt_doc": "{}",
                        "receipt_ref": f"0x{n:064x}",
                        "amount_minor": 1000 + n % 5000,
                        "currency": "EUR",
                        "points": 10 + n % 50,
                        "nonce": Decimal(n + 1),
                        "deadline": 2**40,
                        "signature": "ab" * 65,
                        "tx_hash": None if status == "accepted" else f"0x{n // 100:064x}",
                        "block_number": None if status == "accepted" else n // 100,
                        "log_index": None if status == "accepted" else n % 100,
                        "error_code": "insufficient_points" if status == "rejected" else None,
                        "created_at": at,
                        "updated_at": at,
                    }
                )
            with engine.begin() as conn:
                conn.execute(insert(OPS), rows)
            progress.advance(task, len(rows))
    engine.dispose()


def timed(sessions: Callable[[], Session], query: Callable[[Session, int], Any], samples: int) -> list[float]:
    """Milliseconds of each run of `query(session, i)`, a fresh session each (as a request)."""
    out = []
    for i in range(samples):
        start = time.perf_counter()
        with sessions() as session:
            query(session, i)
        out.append(1000 * (time.perf_counter() - start))
    return out


def explain(engine: Any, sessions: Callable[[], Session], cases: dict[str, Callable[[Session, int], Any]]) -> None:
    """The plan of the last statement each kind of query runs (the page itself)."""
    seen: list[tuple[str, Any]] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _record(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        seen.append((statement, parameters))

    sqlite = engine.dialect.name == "sqlite"
    for label, query in cases.items():
        seen.clear()
        with sessions() as session:
            query(session, 0)
        statement, parameters = seen[-1]
        with engine.connect() as conn:
            prefix = "EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN (ANALYZE, COSTS OFF) "
            rows = conn.exec_driver_sql(prefix + statement, parameters).all()
        print(f"--- {label}")
        for row in rows:
            print("   ", row[-1] if sqlite else row[0])
    event.remove(engine, "before_cursor_execute", _record)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--operations", type=int, default=1_000_000)
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--partners", type=int, default=10)
    parser.add_argument("--samples", type=int, default=200, help="runs of each kind of query")
    parser.add_argument("--postgres", metavar="URL", help="a PostgreSQL server's URL: a fresh database is made on it")
    parser.add_argument("--json", help="write the figures to this file")
    parser.add_argument("--explain", action="store_true", help="print the plan of each kind of query's main statement")
    args = parser.parse_args()
    console = Console()
    load_start = os.getloadavg()[0]

    folder = Path(tempfile.mkdtemp(prefix="bench-queries-"))
    admin_url = None
    if args.postgres:
        name = f"bench_queries_{os.getpid()}"
        admin_url = make_url(args.postgres)
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        url = admin_url.set(database=name).render_as_string(hide_password=False)
    else:
        url = f"sqlite:///{folder / 'gateway.sqlite'}"
    try:
        migrate(url)
        started = time.perf_counter()
        fill(url, operations=args.operations, members=args.members, partners=args.partners, console=console)
        console.print(f"filled in {time.perf_counter() - started:.0f} s")
        if args.postgres:
            # What autovacuum does after a bulk load; without statistics the planner guesses.
            with create_engine(url, isolation_level="AUTOCOMMIT").connect() as conn:
                conn.execute(text("ANALYZE"))
        engine = make_engine(url)
        sessions = make_sessionmaker(engine)
        rng = random.Random(7)
        admin_caller = Caller("bench", "admin", None)
        members = [f"m{rng.randrange(args.members)}" for _ in range(args.samples)]
        partner_ids = [1 if i % 2 == 0 else rng.randint(2, args.partners) for i in range(args.samples)]
        cursors = [rng.randrange(args.operations) for _ in range(args.samples)]
        middle = START + timedelta(days=182)

        def activity(member: Callable[[int], str], caller: Callable[[int], Caller], cursor: bool = False) -> Any:
            return lambda s, i: queries.member_activity(
                s, caller=caller(i), member_id=member(i), cursor=cursors[i] if cursor else None, limit=50
            )

        def operations_of(**filters: Any) -> Any:
            cursor = filters.pop("cursor", False)
            return lambda s, i: feed.partner_operations(
                s,
                caller=admin_caller,
                partner_id=partner_ids[i],
                accepted_from=filters.get("accepted_from"),
                accepted_to=filters.get("accepted_to"),
                kind=filters.get("kind"),
                status=filters.get("status"),
                cursor=cursors[i] if cursor else None,
                limit=100,
            )

        cases: dict[str, Callable[[Session, int], Any]] = {
            "member activity, first page (admin)": activity(lambda i: members[i], lambda i: admin_caller),
            "member activity, first page (partner)": activity(
                lambda i: members[i], lambda i: Caller("bench", "partner", partner_ids[i])
            ),
            "heavy member activity, first page": activity(lambda i: HEAVY, lambda i: admin_caller),
            "heavy member activity, from a cursor": activity(lambda i: HEAVY, lambda i: admin_caller, cursor=True),
            "partner operations, first page": operations_of(),
            "partner operations, from a cursor": operations_of(cursor=True),
            "partner operations, kind=reversal": operations_of(kind="reversal"),
            "partner operations, status=rejected": operations_of(status="rejected"),
            "partner operations, from the middle of the year": operations_of(accepted_from=middle),
            "partner operations, one day": operations_of(accepted_from=middle, accepted_to=middle + timedelta(days=1)),
        }
        figures: dict[str, Any] = {}
        if args.explain:
            explain(engine, sessions, cases)
        for label, query in cases.items():
            timed(sessions, query, 3)  # warm-up: the plan cache, the pages of the index
            ms = timed(sessions, query, args.samples)
            q = statistics.quantiles(ms, n=100)
            figures[label] = {"p50_ms": round(q[49], 2), "p99_ms": round(q[98], 2), "max_ms": round(max(ms), 2)}
            print(f"{label:>48}: p50 {q[49]:7.2f} ms  p99 {q[98]:7.2f} ms  max {max(ms):7.2f} ms")
        engine.dispose()
    finally:
        if admin_url is not None:
            admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
        shutil.rmtree(folder, ignore_errors=True)
    result = {
        "database": "postgresql" if args.postgres else "sqlite",
        "operations": args.operations,
        "members": args.members,
        "partners": args.partners,
        "samples": args.samples,
        "queries": figures,
        "worst_p99_ms": max(f["p99_ms"] for f in figures.values()),
        "load_avg_start": round(load_start, 2),
        "load_avg_end": round(os.getloadavg()[0], 2),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, CPython {platform.python_version()}",
        "date": datetime.now(UTC).date().isoformat(),
        "time_utc": datetime.now(UTC).strftime("%H:%M"),
    }
    console.print(f"worst p99: {result['worst_p99_ms']} ms")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
