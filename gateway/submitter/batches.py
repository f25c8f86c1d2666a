"""Building a batch: the queue of one kind, its calldata, the signed transaction, and storing
it (with its nonce, the operations marked `submitted`) before it is broadcast."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from eth_utils import keccak
from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session

from gateway.app.runtime import Runtime
from gateway.chain.gas import BATCH_OVERHEAD, GAS_CAP, batch_gas_limit
from gateway.chain.ledger import (
    AWARD_REASONS,
    EarnRecord,
    SignedAward,
    SignedRedeem,
    SignedRefund,
    SignedReverse,
)
from gateway.chain.reads import ChainReads
from gateway.db.models import Base, Batch, Member, Operation
from gateway.operations.kinds import BatchStatus, Kind, Status
from gateway.operations.migration import destination, migration_calldata
from gateway.operations.refunds import redemption_record
from gateway.operations.store import proof_from_column
from gateway.submitter.calldata import earn_calldata
from gateway.submitter.holds import refuse, sort_out
from gateway.submitter.queue import QueueFloors
from partners.signing import (
    AwardMessage,
    CompactSignature,
    MigrateMessage,
    RedeemMessage,
    RefundMessage,
    ReverseMessage,
)

# Migrations last: a round sends the member's other operations before its migration.
KINDS = (Kind.EARN, Kind.REDEMPTION, Kind.REVERSAL, Kind.AWARD, Kind.REFUND, Kind.MIGRATION)
FUNCTIONS = {
    Kind.EARN: "earnBatch",
    Kind.REDEMPTION: "redeemBatch",
    Kind.REVERSAL: "reverseBatch",
    Kind.AWARD: "awardBatch",
    Kind.REFUND: "refundBatch",
}

# Per-operation gas allowed inside a batch: well above the steady state (gas.TYPICAL, 30k-60k)
# and above a bucket walk of a few dozen months. Only the gas used is paid, so a generous limit
# costs nothing; it saves running every batch twice through eth_estimateGas. A batch of members
# with very long histories can still exceed it: it then reverts whole, and the submitter halves
# the next batch of that kind down to one operation, whose limit is the measured worst case
# (gas.WORST_CASE), so a valid operation always goes through and nothing loops (issue 10,
# finding 4).
GAS_PER_OPERATION = {
    Kind.EARN: 120_000,
    Kind.REDEMPTION: 250_000,
    Kind.REVERSAL: 250_000,
    Kind.AWARD: 120_000,
    Kind.REFUND: 250_000,
}
GROW_AFTER = 4
WORST_KIND = {
    Kind.EARN: "earn",
    Kind.REDEMPTION: "redemption",
    Kind.REVERSAL: "reversal",
    Kind.AWARD: "award",
    Kind.REFUND: "refund",
    Kind.MIGRATION: "migration",
}
# A migration is one contract call (`migrate`), not a batch: one per transaction.
ONE_AT_A_TIME = frozenset({Kind.MIGRATION})


def gas_limit(kind: str, size: int) -> int:
    if size == 1:
        return batch_gas_limit(WORST_KIND[Kind(kind)], 1)
    return min(GAS_CAP, BATCH_OVERHEAD + GAS_PER_OPERATION[Kind(kind)] * size)


OPS = Base.metadata.tables["operations"]
_BATCH_ROWS = (
    select(OPS)
    .where(
        OPS.c.kind == bindparam("kind"),
        OPS.c.status.concat("") == Status.ACCEPTED.value,  # along the primary key (queue.py)
        OPS.c.seq >= bindparam("first"),
        OPS.c.seq <= bindparam("last"),
    )
    .order_by(OPS.c.seq)
    .limit(bindparam("limit"))  # on PostgreSQL a lower seq may commit late, inside the range
)
# One executemany for a batch of hundreds: none of the ORM's per-object bookkeeping.
_SUBMITTED = (
    update(OPS)
    .where(OPS.c.seq == bindparam("b_seq"))
    .values(
        status=Status.SUBMITTED,
        batch_id=bindparam("b_batch"),
        batch_index=bindparam("b_index"),
        tx_hash=bindparam("b_tx"),
    )
)


@dataclass(frozen=True)
class Draft:
    """The operations of the next batch, its calldata and the nonce it will use."""

    kind: str
    ops: Sequence[Any]
    data: bytes
    nonce: int
    # The kind's queue floor once this batch is stored: its first operation left waiting
    # (held back around a migration), else just above the last row read for it.
    floor_after: int | None = None


class Batches:
    """Reads the queue and builds, signs and stores batches, with no database lock held while
    the chain is asked anything: API requests never wait behind an RPC call."""

    def __init__(self, runtime: Runtime, *, batch_max: int, window: float) -> None:
        self.rt, self.batch_max, self.window = runtime, batch_max, window
        # Batch size per kind after a whole-batch revert: halved each time, doubled again after
        # GROW_AFTER batches in a row went through (not after one: it would retry the size that
        # just failed while the costly operations are still queued).
        self.size: dict[str, int] = {}
        self._passed: dict[str, int] = {}
        self._selectors: dict[str, bytes] = {}
        self.queue = QueueFloors()

    def reverted(self, kind: str, size: int) -> None:
        """A batch of `size` operations of `kind` reverted whole: the next one is half as big."""
        self.size[kind] = max(1, size // 2)
        self._passed[kind] = 0
        self.queue.rescan()  # its operations are back in the queue, below the floors

    def mined(self, kind: str) -> None:
        """A batch of `kind` went through: after a few in a row, grow back towards the configured size."""
        if kind not in self.size:
            return
        self._passed[kind] = self._passed.get(kind, 0) + 1
        if self._passed[kind] >= GROW_AFTER:
            self._passed[kind] = 0
            grown = self.size[kind] * 2
            if grown >= self.batch_max:
                del self.size[kind]
            else:
                self.size[kind] = grown

    def look(self) -> None:
        """Once a round, before `next`: which kinds have operations queued, and from where (queue.py)."""
        with self.rt.sessions() as session:
            self.queue.look(session.connection())

    def next(self, kind: str) -> Draft | float | None:
        """The next batch of `kind`; or the seconds until a filling batch's window ends; or
        None when nothing is queued."""
        with self.rt.sessions() as session:
            conn = session.connection()
            # First only the queue's shape (this runs many times while a batch fills up).
            limit = 1 if kind in ONE_AT_A_TIME else self.size.get(kind, self.batch_max)
            queued = self.queue.queued(conn, kind, limit)
            if not queued:
                return None
            oldest = queued[0].created_at
            age = (datetime.now(UTC) - (oldest if oldest.tzinfo else oldest.replace(tzinfo=UTC))).total_seconds()
            if len(queued) < limit and age < self.window:
                return self.window - age  # let the batch fill up for a moment
            bounds = {"kind": kind, "first": queued[0].seq, "last": queued[-1].seq, "limit": limit}
            rows = conn.execute(_BATCH_ROWS, bounds).all()
            ops, refused = sort_out(self.rt, session, kind, rows)  # around members' migrations
            gone = {op.seq for op in ops} | {r["b_seq"] for r in refused}
            held = [row.seq for row in rows if row.seq not in gone]
            draft = None
            if ops:
                calldata = self.calldata(session, kind, ops)
                after = min(held) if held else rows[-1].seq + 1
                draft = Draft(kind, ops, calldata, self.next_nonce(session), floor_after=int(after))
        if refused:
            refuse(self.rt, refused)
        return draft

    def sign(self, draft: Draft) -> bytes:
        """The raw transaction (raises LedgerRevert when the whole batch would revert)."""
        sender = self.rt.relayer
        raw, _ = sender.sign(
            self.rt.ledger.address, draft.data, nonce=draft.nonce, gas=gas_limit(draft.kind, len(draft.ops))
        )
        return raw

    def store(self, draft: Draft, raw: bytes) -> None:
        """The signed transaction and its operations, `submitted`, in one transaction."""
        tx_hash = "0x" + keccak(raw).hex()
        seqs = [op.seq for op in draft.ops]
        with self.rt.writes.begin() as session:
            batch = Batch(
                kind=draft.kind,
                sender=self.rt.relayer.address,
                nonce=draft.nonce,
                raw_tx="0x" + raw.hex(),
                tx_hash=tx_hash,
                status=BatchStatus.SIGNED,
                size=len(draft.ops),
            )
            session.add(batch)
            session.flush()
            session.connection().execute(
                _SUBMITTED,
                [{"b_seq": seq, "b_batch": batch.id, "b_index": i, "b_tx": tx_hash} for i, seq in enumerate(seqs)],
            )
        if draft.floor_after is not None:  # committed: the next read of the queue starts after them
            self.queue.passed(draft.kind, draft.floor_after)

    def next_nonce(self, session: Session) -> int:
        sender = self.rt.relayer.address
        stored = session.scalar(select(func.max(Batch.nonce)).where(Batch.sender == sender))
        chain = ChainReads(self.rt.chain).pending_nonce(sender)
        # Another key user (the operator sharing the key) may have moved the chain's count on.
        return max(chain, (stored + 1) if stored is not None else 0)

    def _selector(self, kind: str) -> bytes:
        if kind not in self._selectors:
            self._selectors[kind] = self.rt.ledger.encode_call(FUNCTIONS[Kind(kind)], [])[:4]
        return self._selectors[kind]

    def calldata(self, session: Session, kind: str, ops: Sequence[Any]) -> bytes:
        addresses = dict(
            session.execute(
                select(Member.member_id, Member.address).where(Member.member_id.in_({op.member_id for op in ops}))
            ).all()
        )
        if kind == Kind.EARN:  # the bulk of the traffic: encoded by hand, in one pass
            return earn_calldata(self._selector(kind), ops, addresses)
        items: list[Any] = []
        for op in ops:
            sig = CompactSignature.from_bytes(bytes.fromhex(op.signature[2:]))
            ref = bytes.fromhex(op.receipt_ref[2:])
            nonce = int(op.nonce)
            # The address the operation was signed for (sort_out refused those the member left).
            address = op.member_address or addresses[op.member_id]
            if kind == Kind.REDEMPTION:
                items.append(
                    SignedRedeem(
                        RedeemMessage(address, op.partner_id, int(op.points or 0), ref, nonce, op.deadline), sig
                    ).as_tuple()
                )
            elif kind == Kind.AWARD:
                award = AwardMessage(
                    op.partner_id, address, int(op.points or 0), AWARD_REASONS[op.reason], ref, nonce, op.deadline
                )
                items.append(SignedAward(award, sig).as_tuple())
            elif kind == Kind.REFUND:
                redemption = session.scalar(select(Operation).where(Operation.id == op.original_id))
                assert redemption is not None and redemption.earn_batch_id is not None
                rd = redemption_record(session, redemption)
                refund = RefundMessage(op.partner_id, rd.leaf(), int(op.points or 0), ref, nonce, op.deadline)
                items.append(SignedRefund(refund, sig, rd).as_tuple())
            elif kind == Kind.MIGRATION:
                migration = MigrateMessage(address, destination(op.receipt_doc), nonce, op.deadline)
                return migration_calldata(self.rt, migration, sig)  # one call, not a batch
            else:
                earn = session.scalar(select(Operation).where(Operation.id == op.original_id))
                assert earn is not None and earn.earn_batch_id is not None
                record = EarnRecord(
                    int(earn.earn_batch_id),
                    earn.partner_id,
                    earn.member_address or addresses[op.member_id],  # the address the earn was credited to
                    bytes.fromhex(earn.receipt_ref[2:]),
                    int(earn.amount_minor or 0),
                    int(earn.points or 0),
                    int(earn.earn_month or 0),
                    proof_from_column(earn.earn_proof),
                    bonus=int(earn.bonus or 0),
                )
                message = ReverseMessage(op.partner_id, record.leaf(), int(op.points or 0), ref, nonce, op.deadline)
                items.append(SignedReverse(message, sig, record).as_tuple())
        return self.rt.ledger.encode_call(FUNCTIONS[Kind(kind)], items)
