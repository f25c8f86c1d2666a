"""Where each kind's queue of accepted operations starts, so that a round reads the queue
without scanning every operation in flight (issue 13, batch intake).

The operations table has no index that starts with the kind, only (status, created_at): with
30,000 batch records accepted, "the first 200 accepted earns, by seq" walked all 30,000 and
sorted them (40 ms), and so did the same question for each of the five kinds that had none
queued, every round. Instead the submitter keeps, per kind, a `floor`: a seq at or below the
kind's first accepted operation. A kind with no floor has nothing queued and costs nothing; a
kind with one is read along the primary key from its floor, stopping at the batch's size.

How the floors stay true:
- a full look (`status = accepted`, grouped by kind) at the start and at least every
  `RESCAN_SECONDS`; the seq of the newest operation is noted first (`high`);
- in between, a round reads only the operations above `high` (new ones, along the primary
  key) and lowers or adds floors for what it finds;
- a stored batch moves its kind's floor past the rows it read (`passed`), or to the first
  one it held back around a migration;
- an operation the submitter puts back in the queue (a batch reverted whole) calls for a
  full look at once (`rescan`).
On SQLite writes are serialized, so a row that commits after a look has a seq above what that
look saw. On PostgreSQL a lower seq can commit after a higher one was seen: such a row waits
for the next full look (at most `RESCAN_SECONDS`); nothing is skipped for good.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Connection, bindparam, func, select

from gateway.db.models import Base
from gateway.operations.kinds import Status

RESCAN_SECONDS = 1.0

OPS = Base.metadata.tables["operations"]
# `status || ''`: the same test, but one the planner cannot answer from the (status,
# created_at) index, which would walk every accepted operation; the primary key from the
# floor finds the first `limit` rows of the kind in seq order and stops.
_ACCEPTED = OPS.c.status.concat("") == Status.ACCEPTED.value
_HIGH = select(func.max(OPS.c.seq))
_ALL = select(OPS.c.kind, func.min(OPS.c.seq)).where(OPS.c.status == Status.ACCEPTED.value).group_by(OPS.c.kind)
_NEW = select(OPS.c.kind, func.min(OPS.c.seq)).where(OPS.c.seq > bindparam("high"), _ACCEPTED).group_by(OPS.c.kind)
QUEUED = (
    select(OPS.c.seq, OPS.c.created_at)
    .where(OPS.c.seq >= bindparam("floor"), OPS.c.kind == bindparam("kind"), _ACCEPTED)
    .order_by(OPS.c.seq)
    .limit(bindparam("limit"))
)


class QueueFloors:
    def __init__(self) -> None:
        self.floor: dict[str, int] = {}  # kind -> at or below its first accepted operation's seq
        self.high = 0  # every operation above this seq is new since the last look
        self._scanned = -float("inf")

    def rescan(self) -> None:
        """The next look is a full one (operations went back to the queue)."""
        self._scanned = -float("inf")

    def look(self, conn: Connection) -> None:
        """Brings the floors up to date (once a round): a full look when one is due, else the
        new operations only."""
        high = int(conn.execute(_HIGH).scalar() or 0)  # first: a row committed after it is above it
        if time.monotonic() - self._scanned >= RESCAN_SECONDS:
            self._scanned = time.monotonic()
            self.floor = {str(kind): int(seq) for kind, seq in conn.execute(_ALL)}
        elif high > self.high:
            for kind, seq in conn.execute(_NEW, {"high": self.high}):
                self.floor[str(kind)] = min(int(seq), self.floor.get(str(kind), int(seq)))
        self.high = max(self.high, high)

    def queued(self, conn: Connection, kind: str, limit: int) -> list[Any]:
        """The first `limit` accepted operations of `kind` (seq, created_at), in seq order."""
        floor = self.floor.get(kind)
        if floor is None:
            return []
        rows = list(conn.execute(QUEUED, {"floor": floor, "kind": kind, "limit": limit}))
        if rows:
            self.floor[kind] = int(rows[0].seq)
        else:
            del self.floor[kind]
        return rows

    def passed(self, kind: str, floor: int) -> None:
        """A batch of `kind` was stored: none of its kind's operations below `floor` is still
        accepted (those it held back set `floor` at the first of them)."""
        if kind in self.floor:
            self.floor[kind] = max(self.floor[kind], floor)
