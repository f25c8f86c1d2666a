"""The submitter's queue floors (gateway/submitter/queue.py, issue 13): a round reads each
kind's queue from a floor instead of walking every accepted operation, and the floors never
pass an operation that is still accepted: a new one, one put back in the queue, one held
back, or (PostgreSQL) one whose lower seq committed after a higher one was seen."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import Connection, create_engine, insert, update

from gateway.db.models import Base
from gateway.operations.kinds import Status
from gateway.submitter.queue import QueueFloors

OPS = Base.metadata.tables["operations"]


@pytest.fixture
def conn() -> Iterator[Connection]:
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine, tables=[OPS])
    with engine.begin() as connection:
        yield connection


def _add(conn: Connection, seq: int, kind: str = "earn", status: str = Status.ACCEPTED.value) -> None:
    now = datetime.now(UTC)
    conn.execute(
        insert(OPS).values(
            seq=seq,
            id=f"op{seq}",
            kind=kind,
            partner_id=1,
            member_id="m",
            receipt_id=f"r{seq}",
            status=status,
            receipt_doc="{}",
            receipt_ref="0x" + "00" * 32,
            nonce=seq,
            deadline=0,
            signature="0x",
            created_at=now,
            updated_at=now,
        )
    )


def _set(conn: Connection, seqs: list[int], status: str) -> None:
    conn.execute(update(OPS).where(OPS.c.seq.in_(seqs)).values(status=status))


def _queued(queue: QueueFloors, conn: Connection, kind: str, limit: int = 100) -> list[int]:
    return [row.seq for row in queue.queued(conn, kind, limit)]


def test_floors_follow_the_queue_and_never_pass_an_accepted_operation(
    conn: Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("gateway.submitter.queue.RESCAN_SECONDS", 3600.0)  # only the first look is full
    queue = QueueFloors()
    queue.look(conn)
    assert _queued(queue, conn, "earn") == [] and queue.floor == {}
    for seq in range(10, 15):
        _add(conn, seq)
    _add(conn, 15, "award")
    _add(conn, 16, "earn", Status.CONFIRMED.value)
    queue.look(conn)  # the first look is a full one
    assert queue.floor == {"earn": 10, "award": 15}
    assert _queued(queue, conn, "earn", 3) == [10, 11, 12]
    assert _queued(queue, conn, "redemption") == []  # no floor: nothing asked

    # A batch of 10-12 stored; 11 held back around a migration: the floor stops at it.
    _set(conn, [10, 12], Status.SUBMITTED.value)
    queue.passed("earn", 11)
    assert _queued(queue, conn, "earn") == [11, 13, 14]
    _set(conn, [11, 13, 14], Status.SUBMITTED.value)
    queue.passed("earn", 15)
    assert _queued(queue, conn, "earn") == [] and "earn" not in queue.floor

    # New operations (above the last look's seq) are found without a full look.
    _add(conn, 20)
    _add(conn, 21, "redemption")
    queue.look(conn)
    assert _queued(queue, conn, "earn") == [20] and _queued(queue, conn, "redemption") == [21]

    # A lower seq committed late (PostgreSQL) waits for the next full look; so does an
    # operation put back in the queue, which asks for that look at once.
    _add(conn, 17)
    queue.look(conn)
    assert _queued(queue, conn, "earn") == [20]
    _set(conn, [12], Status.ACCEPTED.value)
    queue.rescan()
    queue.look(conn)
    assert _queued(queue, conn, "earn") == [12, 17, 20]
    assert _queued(queue, conn, "award") == [15]


def test_a_full_look_comes_at_least_every_rescan_interval(conn: Connection, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("gateway.submitter.queue.RESCAN_SECONDS", 3600.0)
    queue = QueueFloors()
    _add(conn, 5)
    queue.look(conn)
    _add(conn, 3)  # committed after 5 was seen
    queue.look(conn)
    assert _queued(queue, conn, "earn") == [5]
    monkeypatch.setattr("gateway.submitter.queue.RESCAN_SECONDS", 0.0)
    queue.look(conn)
    assert _queued(queue, conn, "earn") == [3, 5]
