"""Following broadcast batches: their receipts, decoded into each operation's result."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from hexbytes import HexBytes
from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session

from gateway.app.runtime import Runtime
from gateway.chain.debt import debt_of, debts_recorded, debts_repaid
from gateway.chain.events import EventDecoder
from gateway.chain.jsonrpc import quantity
from gateway.chain.ledger import LedgerEvent, decode_error, earn_records, redemption_records
from gateway.chain.outcomes import REJECTED, RESULT_EVENT, error_code
from gateway.chain.reads import ChainReads
from gateway.core.metrics import Metrics
from gateway.db.models import Base, Batch, Operation
from gateway.operations.kinds import BatchStatus, Kind, Status
from gateway.operations.migration import destination, migrated
from gateway.operations.store import proof_to_column
from gateway.points.rules import month_of
from gateway.submitter.batches import gas_limit
from gateway.submitter.tiers import TierWatch
from gateway.webhooks.announce import announce_batch

log = logging.getLogger("gateway.submitter")

# The events a batch's results are read from (its Transfer logs are not needed).
RESULT_OF = {**RESULT_EVENT, Kind.MIGRATION.value: "Migrated"}
RESULTS = frozenset(
    {*RESULT_OF.values(), REJECTED, "EarnBatchCommitted", "RedeemBatchCommitted", "DebtRecorded", "DebtRepaid"}
)

DEBT_KINDS = frozenset({Kind.REVERSAL, Kind.EARN, Kind.AWARD, Kind.REFUND})  # (r2) operations.debt
OPS = Base.metadata.tables["operations"]
# The per-operation writes of a batch, as Core executemany statements: one round trip for a
# batch of hundreds, none of the ORM's per-object bookkeeping.
_REJECT = (
    update(OPS)
    .where(OPS.c.seq == bindparam("b_seq"))
    .values(
        status=Status.REJECTED,
        block_number=bindparam("b_block"),
        block_hash=bindparam("b_hash"),
        error_code=bindparam("b_code"),
        error_message=bindparam("b_message"),
    )
)
_RESULT = (
    update(OPS)
    .where(OPS.c.seq == bindparam("b_seq"))
    .values(
        status=bindparam("b_status"),
        block_number=bindparam("b_block"),
        block_hash=bindparam("b_hash"),
        log_index=bindparam("b_log"),
        points=bindparam("b_points"),
        earn_batch_id=bindparam("b_earn_batch"),
        earn_month=bindparam("b_earn_month"),
        earn_proof=bindparam("b_earn_proof"),
        commit_index=bindparam("b_commit_index"),
        debt=bindparam("b_debt"),
        bonus=bindparam("b_bonus"),
    )
)


def observe_latency(metrics: Metrics, accepted_at: list[datetime]) -> None:
    """Acceptance to confirmation, for the operations just confirmed."""
    now = datetime.now(UTC)
    metrics.observe("submit_to_confirm_seconds", ((now - t).total_seconds() for t in accepted_at))


@dataclass
class Tracked:
    """What one round of tracking saw."""

    busy: bool = False  # a receipt was applied
    mined: bool = False  # a batch was mined (its depth is worth a look, whatever the head)
    reverted: list[tuple[str, int]] = field(default_factory=list)  # (kind, size): reverted whole, queued again
    passed: list[str] = field(default_factory=list)  # kinds of batches that went through


class ReceiptTracker:
    def __init__(self, runtime: Runtime, metrics: Metrics, *, confirmations: int, refresh_tiers: bool = True) -> None:
        self.rt, self.metrics, self.confirmations = runtime, metrics, confirmations
        # Re-reading the tiers of a batch's members fills this process's cache for the earns
        # it accepts; a submitter alone in its process (`loyalty submit`) accepts none.
        self.refresh_tiers = refresh_tiers
        # A batch's receipt holds hundreds of logs; the members' addresses it keeps checksummed
        # are bounded like the runtime's member caches.
        self._decoder = EventDecoder(runtime.ledger, max_addresses=runtime.settings.gateway.member_cache_entries)
        self.tiers = TierWatch(runtime)
        self.chain = ChainReads(runtime.chain)
        self.floor = 0  # no batch below this id is `signed`

    def forget_floor(self) -> None:
        """A reorg set batches back to `signed`: the next look reads them all."""
        self.floor = 0

    def track(self, broadcast: Callable[[bytes], None]) -> Tracked:
        """Reads receipts of broadcast batches; broadcasts again what the node has lost."""
        with self.rt.sessions() as session:
            top = session.scalar(select(func.max(Batch.id))) or 0
            pending = session.execute(
                select(Batch.id, Batch.tx_hash, Batch.raw_tx)
                .where(Batch.id >= self.floor, Batch.status == BatchStatus.SIGNED)
                .order_by(Batch.nonce)
            ).all()
        # Batches are stored by this (the leading) process only, with growing ids, and only a
        # reorg sets one back to `signed` (ReorgWatch calls `forget_floor`): the next look can
        # start at the oldest batch in flight, or above every batch now. Without the floor,
        # every round read every batch ever stored (their raw transactions are large rows).
        self.floor = min(batch.id for batch in pending) if pending else top + 1
        seen = Tracked()
        for batch in pending:
            receipt = self.chain.receipt(batch.tx_hash)
            if not receipt:
                if not self.chain.knows(batch.tx_hash):
                    broadcast(bytes.fromhex(batch.raw_tx[2:]))
                continue
            kind, size, outcome = self.apply(batch.id, receipt)
            if outcome == "requeued":
                seen.reverted.append((kind, size))
            elif outcome == "mined":
                seen.mined = True
                seen.passed.append(kind)
            seen.busy = True
        return seen

    def apply(self, batch_id: int, receipt: Any) -> tuple[str, int, str]:
        """Stores a mined batch's results; returns its kind, size and outcome: "mined", or,
        when the whole transaction reverted, "requeued" (its operations wait for the next
        batch) or "refused" (its one operation)."""
        status = quantity(receipt["status"])
        block_number = quantity(receipt["blockNumber"])
        block_hash = HexBytes(receipt["blockHash"]).to_0x_hex()
        block = self.chain.block(block_number)
        month = month_of(quantity(block["timestamp"]))
        self.rt.chain_time = max(self.rt.chain_time, quantity(block["timestamp"]))
        events: list[LedgerEvent] = []
        with self.rt.writes.begin() as session:
            batch = session.get(Batch, batch_id)
            assert batch is not None
            kind = str(batch.kind)
            ops = session.execute(
                select(OPS.c.seq, OPS.c.created_at).where(OPS.c.batch_id == batch_id).order_by(OPS.c.batch_index)
            ).all()
            batch.block_number, batch.block_hash, batch.mined_at = block_number, block_hash, datetime.now(UTC)
            conn = session.connection()
            if status != 1:
                batch.status = BatchStatus.REVERTED
                if len(ops) == 1 and quantity(receipt["gasUsed"]) >= gas_limit(kind, 1):
                    # Alone, with the worst case's gas, it ran out: no retry can do better, so
                    # it is refused rather than queued forever (issue 10, finding 4). (A revert
                    # for another reason, such as a pause that raced the batch, queues it again.)
                    conn.execute(
                        _REJECT,
                        [
                            {
                                "b_seq": ops[0].seq,
                                "b_code": "transaction_reverted",
                                "b_message": "the ledger reverted this operation's transaction",
                                "b_block": block_number,
                                "b_hash": block_hash,
                            }
                        ],
                    )
                    log.warning("batch %s reverted with one operation: refused", batch.tx_hash)
                    return kind, 1, "refused"
                # Nothing happened on-chain. The operations go back to the queue and ride in
                # smaller transactions with new nonces (the loop halves the next batch).
                conn.execute(
                    update(OPS)
                    .where(OPS.c.batch_id == batch_id)
                    .values(status=Status.ACCEPTED, batch_id=None, batch_index=None, tx_hash=None)
                )
                log.warning("batch %s reverted; %d operations queued again", batch.tx_hash, len(ops))
                return kind, len(ops), "requeued"
            batch.status = BatchStatus.CONFIRMED if self.confirmations == 0 else BatchStatus.MINED
            events = [e for log_ in receipt["logs"] if (e := self._decoder.decode(log_, RESULTS)) is not None]
            rejected, accepted = self.results(batch.kind, [op.seq for op in ops], events, month)
            where = {"b_block": block_number, "b_hash": block_hash}
            if rejected:
                conn.execute(_REJECT, [{**row, **where} for row in rejected])
            if accepted:
                state = Status.CONFIRMED if self.confirmations == 0 else Status.SUBMITTED
                conn.execute(_RESULT, [{**row, **where, "b_status": state} for row in accepted])
            if self.confirmations == 0:
                if kind == Kind.MIGRATION:
                    finish_migrations(session, self.rt, batch_id)
                announce_batch(session, batch_id)  # webhooks: in the transaction that records the outcome
                self.metrics.add("operations_confirmed_total", len(accepted))
                confirmed = {row["b_seq"] for row in accepted}
                observe_latency(self.metrics, [op.created_at for op in ops if op.seq in confirmed])
        # After the commit, with no database lock held: the tiers of members an earn may have moved.
        if self.refresh_tiers:
            self.tiers.after_batch(kind, events, block_number, month)
        return kind, len(ops), "mined"

    def results(
        self, kind: str, seqs: list[int], events: list[LedgerEvent], month: int
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The rows of a mined batch's operations: (rejected ones, accepted ones), from its events."""
        reasons = {e.args["index"]: decode_error(e.args["reason"]) for e in events if e.name == REJECTED}
        results = iter(e for e in events if e.name == RESULT_OF[kind])
        rejected: list[dict[str, Any]] = []
        accepted: list[dict[str, Any]] = []
        accepted_events: list[LedgerEvent] = []
        # (r2) The debt each operation moved: a reversal's shortfall, an issue's or refund's repayment.
        debts = debts_recorded(events) if kind == Kind.REVERSAL else debts_repaid(events)
        for index, seq in enumerate(seqs):
            if index in reasons:
                error = reasons[index]
                rejected.append({"b_seq": seq, "b_code": error_code(error.name), "b_message": str(error)})
                continue
            event = next(results)
            accepted.append(
                {
                    "b_seq": seq,
                    "b_log": event.log_index,
                    "b_points": int(event.args["points"]),
                    "b_earn_batch": None,
                    "b_earn_month": None,
                    "b_earn_proof": None,
                    "b_commit_index": None,
                    "b_debt": debt_of(event, debts) if kind in DEBT_KINDS else None,
                    # (r2) a campaign earn's bonus: part of its leaf, what a reversal proves
                    "b_bonus": int(event.args["bonus"]) if int(event.args.get("campaignId", 0)) else None,
                }
            )
            accepted_events.append(event)
        self.metrics.add("operations_rejected_total", len(rejected))
        if kind in (Kind.EARN, Kind.AWARD) and accepted:
            # What a reversal proves the earn (or award: a leaf with spend 0) with.
            committed = next(e for e in events if e.name == "EarnBatchCommitted")
            records = earn_records(int(committed.args["batchId"]), month, accepted_events)
            for row, record in zip(accepted, records, strict=True):
                row.update(b_earn_batch=record.batch_id, b_earn_month=month, b_earn_proof=proof_to_column(record.proof))
        if kind == Kind.REDEMPTION and accepted:
            # (r2) What a refund proves the redemption with: its batch, place, latest expiry month.
            args = next(e for e in events if e.name == "RedeemBatchCommitted").args
            burnt = redemption_records(int(args["batchId"]), list(args["expiryMonths"]), accepted_events)
            for row, rd in zip(accepted, burnt, strict=True):
                row.update(
                    b_earn_batch=rd.batch_id,
                    b_earn_month=rd.expiry_month,
                    b_earn_proof=proof_to_column(rd.proof),
                    b_commit_index=rd.index,
                )
        return rejected, accepted


def finish_migrations(session: Session, runtime: Runtime, batch_id: int) -> None:
    """A confirmed migration: the member's record follows its points to the new address."""
    for op in session.scalars(
        select(Operation).where(
            Operation.batch_id == batch_id, Operation.kind == Kind.MIGRATION, Operation.status == Status.CONFIRMED
        )
    ):
        migrated(
            session, runtime, member_id=op.member_id, source=str(op.member_address), target=destination(op.receipt_doc)
        )
