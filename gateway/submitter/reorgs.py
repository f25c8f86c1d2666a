"""Confirmations and reorgs: a mined batch is confirmed once deep enough, and batches near the
head are re-checked; one that left the canonical chain goes back to `signed`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from hexbytes import HexBytes
from sqlalchemy import func, select, update

from gateway.app.runtime import Runtime
from gateway.chain.jsonrpc import quantity
from gateway.chain.reads import ChainReads
from gateway.core.metrics import Metrics
from gateway.db.models import Base, Batch
from gateway.operations.kinds import BatchStatus, Kind, Status
from gateway.submitter.receipts import finish_migrations, observe_latency
from gateway.webhooks.announce import announce_batch

log = logging.getLogger("gateway.submitter")

REORG_WINDOW = 64  # confirmed batches this close to the head are re-checked for reorgs
BATCHES = Base.metadata.tables["batches"]
OPS = Base.metadata.tables["operations"]


class ReorgWatch:
    def __init__(
        self, runtime: Runtime, metrics: Metrics, *, confirmations: int, on_reorg: Callable[[], None] | None = None
    ) -> None:
        self.rt, self.metrics, self.confirmations = runtime, metrics, confirmations
        self.on_reorg = on_reorg  # batches went back to `signed`
        self.floor = 0  # no batch below this id is a candidate, nor `signed` (it could become one)
        self.last_head: tuple[int, str] = (-1, "")  # (number, hash) at the last full check
        self.fresh_mined = False  # a batch was mined since: look at its depth, whatever the head
        self._canonical: dict[int, str] = {}  # block number -> hash, verified canonical
        self.chain = ChainReads(runtime.chain)

    def _canonical_hashes(self, latest: Any, numbers: set[int]) -> dict[int, str | None]:
        """Canonical block hashes at `numbers`, asking the chain as little as possible.

        Hashes verified earlier are kept: when the new head's parent is the block we knew at
        that height, every block we knew below it is still canonical (each block commits to
        its parent). Otherwise (a reorg, or several blocks since the last look) the blocks
        in question are read again, in one round trip, with no database lock held."""
        number, block_hash = quantity(latest["number"]), HexBytes(latest["hash"]).to_0x_hex()
        parent = HexBytes(latest["parentHash"]).to_0x_hex()
        if self._canonical.get(number - 1) != parent:
            self._canonical.clear()
        self._canonical[number] = block_hash
        missing = sorted(n for n in numbers if n not in self._canonical)
        blocks = self.chain.blocks(missing)
        for n, block in zip(missing, blocks, strict=True):
            if block is not None:
                self._canonical[n] = HexBytes(block["hash"]).to_0x_hex()
        for n in [n for n in self._canonical if n <= number - 2 * REORG_WINDOW]:
            del self._canonical[n]
        return {n: self._canonical.get(n) for n in numbers}

    def confirm(self) -> bool:
        # Batches waiting for depth, and confirmed ones near the head (re-checked for reorgs).
        # The head block's hash commits to the whole chain: while it is the one seen at the
        # last check, nothing can have been reorganized or got deeper, and the round is cheap.
        if self.last_head[0] < 0:  # just started: only the window below today's head counts
            self.last_head = (self.chain.head(), "")
        near = self.last_head[0] - REORG_WINDOW
        with self.rt.sessions() as session:
            top = session.scalar(select(func.max(Batch.id))) or 0
            rows = session.execute(
                select(Batch.id, Batch.block_number, Batch.block_hash, Batch.status).where(
                    Batch.id >= self.floor,
                    (Batch.status.in_((BatchStatus.MINED, BatchStatus.SIGNED)))
                    | ((Batch.status == BatchStatus.CONFIRMED) & (Batch.block_number > near)),
                )
            ).all()
        # The next look starts at the oldest batch that is a candidate or may become one (a
        # `signed` one, once mined); batches stored later have higher ids, and a reorg, which
        # sets older ones back to `signed`, starts the looks from the first batch again.
        # Without the floor every round read every batch ever stored.
        self.floor = min(row.id for row in rows) if rows else top + 1
        candidates = [row for row in rows if row.status != BatchStatus.SIGNED]
        if not candidates:
            return False
        latest = self.chain.block("latest")
        seen = (quantity(latest["number"]), HexBytes(latest["hash"]).to_0x_hex())
        if seen == self.last_head and not self.fresh_mined:
            return False
        head = seen[0]
        self.last_head, self.fresh_mined = seen, False
        hashes = self._canonical_hashes(latest, {int(n) for _, n, _, _ in candidates if n is not None})
        verdicts = []
        for batch_id, number, stored_hash, status in candidates:
            assert number is not None
            if hashes.get(int(number)) != stored_hash:
                verdicts.append((batch_id, "reorged"))
            elif status == BatchStatus.MINED and head - number + 1 >= self.confirmations:
                verdicts.append((batch_id, "deep"))
        if not verdicts:
            return False
        reorged = [batch_id for batch_id, verdict in verdicts if verdict == "reorged"]
        deep = [batch_id for batch_id, verdict in verdicts if verdict == "deep"]
        with self.rt.writes.begin() as session:
            # Set-based: a few statements per round, whatever the number of operations.
            conn = session.connection()
            if reorged:
                self.floor = 0
                if self.on_reorg is not None:
                    self.on_reorg()
                # Reorged out: back to `signed`; tracking finds it again in the new chain
                # (or broadcasts it again). Nothing reorged out is reported confirmed.
                for tx_hash, number in conn.execute(
                    select(BATCHES.c.tx_hash, BATCHES.c.block_number).where(BATCHES.c.id.in_(reorged))
                ):
                    log.warning("batch %s left the canonical chain at block %s", tx_hash, number)
                conn.execute(
                    update(BATCHES)
                    .where(BATCHES.c.id.in_(reorged))
                    .values(status=BatchStatus.SIGNED, block_number=None, block_hash=None)
                )
                conn.execute(
                    update(OPS)
                    .where(OPS.c.batch_id.in_(reorged))
                    .values(
                        status=Status.SUBMITTED,
                        block_number=None,
                        block_hash=None,
                        log_index=None,
                        error_code=None,
                        error_message=None,
                    )
                )
            if deep:
                accepted_at = (
                    conn.execute(
                        select(OPS.c.created_at).where(OPS.c.batch_id.in_(deep), OPS.c.status == Status.SUBMITTED)
                    )
                    .scalars()
                    .all()
                )
                conn.execute(update(BATCHES).where(BATCHES.c.id.in_(deep)).values(status=BatchStatus.CONFIRMED))
                conn.execute(
                    update(OPS)
                    .where(OPS.c.batch_id.in_(deep), OPS.c.status == Status.SUBMITTED)
                    .values(status=Status.CONFIRMED)
                )
                migrations = set(
                    conn.execute(
                        select(BATCHES.c.id).where(BATCHES.c.id.in_(deep), BATCHES.c.kind == Kind.MIGRATION)
                    ).scalars()
                )
                for batch_id in deep:
                    if batch_id in migrations:
                        finish_migrations(session, self.rt, batch_id)
                    announce_batch(session, batch_id)  # webhooks: in the transaction that confirms
                self.metrics.add("operations_confirmed_total", len(accepted_at))
                observe_latency(self.metrics, list(accepted_at))
        return True
