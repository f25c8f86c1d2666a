"""Turns accepted operations into batch transactions, exactly once.

The order of writes is what makes it safe across crashes:
1. operations are accepted (the outbox) before anyone is answered;
2. a batch's transaction is signed and stored with its nonce, and its operations are marked
   `submitted`, in one database transaction, before it is broadcast;
3. after a restart every stored, unmined transaction is broadcast again, byte for byte, so
   no nonce is skipped and no nonce ever carries two different transactions;
4. results are read from the receipt's events; an operation is `confirmed` once its block
   has the configured depth and its block hash is still canonical.
"""

from __future__ import annotations

import fcntl
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, BinaryIO

from eth_utils import keccak
from hexbytes import HexBytes
from sqlalchemy import bindparam, func, select, text, update
from sqlalchemy.orm import Session

from gateway.chain.events import EventDecoder
from gateway.chain.ledger import (
    EarnRecord,
    LedgerEvent,
    LedgerRevert,
    SignedEarn,
    SignedRedeem,
    SignedReverse,
    decode_error,
    earn_records,
    rpc,
    rpc_many,
)
from gateway.db.models import Base, Batch, Member, Operation
from gateway.errors import ChainError
from gateway.ledger.rules import month_of
from gateway.ledger.runtime import Runtime
from partners.signing import CompactSignature, EarnMessage, RedeemMessage, ReverseMessage

log = logging.getLogger("gateway.submitter")

KINDS = ("earn", "redemption", "reversal")
FUNCTIONS = {"earn": "earnBatch", "redemption": "redeemBatch", "reversal": "reverseBatch"}
RESULT_EVENTS = {"earn": "Earned", "redemption": "Redeemed", "reversal": "Reversed"}
# The events a batch's results are read from (its Transfer logs are not needed).
RESULTS = frozenset({*RESULT_EVENTS.values(), "OperationRejected", "EarnBatchCommitted"})
REORG_WINDOW = 64  # confirmed batches this close to the head are re-checked for reorgs
IDLE_POLL_SECONDS = 0.2
ADVISORY_LOCK_KEY = 0x10_7A17  # one submitter per PostgreSQL database

# The per-operation writes of a batch, as Core executemany statements: one round trip for a
# batch of hundreds, none of the ORM's per-object bookkeeping.
OPS = Base.metadata.tables["operations"]
_REJECT = (
    update(OPS)
    .where(OPS.c.seq == bindparam("b_seq"))
    .values(
        status="rejected",
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
    )
)
_SUBMITTED = (
    update(OPS)
    .where(OPS.c.seq == bindparam("b_seq"))
    .values(
        status="submitted", batch_id=bindparam("b_batch"), batch_index=bindparam("b_index"), tx_hash=bindparam("b_tx")
    )
)


_QUEUED = (
    select(OPS.c.seq, OPS.c.created_at)
    .where(OPS.c.kind == bindparam("kind"), OPS.c.status == "accepted")
    .order_by(OPS.c.seq)
    .limit(bindparam("limit"))
)
_BATCH_ROWS = (
    select(OPS)
    .where(
        OPS.c.kind == bindparam("kind"),
        OPS.c.status == "accepted",
        OPS.c.seq >= bindparam("first"),
        OPS.c.seq <= bindparam("last"),
    )
    .order_by(OPS.c.seq)
    .limit(bindparam("limit"))  # on PostgreSQL a lower seq may commit late, inside the range
)


# pg_try_advisory_lock(bigint) shows in pg_locks as classid (high 32 bits), objid (low 32
# bits), objsubid 1, in the current database.
_ADVISORY_HELD = text(
    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted"
    " AND classid = 0 AND objid = :k AND objsubid = 1"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database()))"
)


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")


@dataclass
class Metrics:
    """Counters for /metrics (Prometheus text format)."""

    counters: Counter[str] = field(default_factory=Counter)
    # Summaries as Prometheus keeps them: a running count and sum each (bounded memory).
    observed: Counter[str] = field(default_factory=Counter)
    sums: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, name: str, value: int = 1) -> None:
        with self.lock:
            self.counters[name] += value

    def observe(self, name: str, values: Iterable[float]) -> None:
        with self.lock:
            for value in values:
                self.observed[name] += 1
                self.sums[name] = self.sums.get(name, 0.0) + value


class Submitter:
    def __init__(self, runtime: Runtime, metrics: Metrics | None = None) -> None:
        self.rt = runtime
        gw = runtime.settings.gateway
        self.confirmations = gw.confirmations
        self.batch_max = gw.batch_max_operations
        self.window = gw.batch_window_ms / 1000
        self.metrics = metrics or Metrics()
        self._paused_until: dict[str, float] = {}
        self._lock_conn: Any = None
        self._lock_file: BinaryIO | None = None
        self._decoder = EventDecoder(runtime.ledger)  # a batch's receipt holds hundreds of logs
        self.is_leader = False
        self._last_head: tuple[int, str] = (-1, "")  # (number, hash) at the last full check
        self._canonical: dict[int, str] = {}  # block number -> hash, verified canonical
        self._next_wake = 0.0
        self._fresh_mined = False
        self._filling = False
        # How long an idle round waits for news. In a gateway process, accepted writes wake
        # the submitter at once (runtime.work_ready); alone in its process it looks again.
        self.idle_poll = IDLE_POLL_SECONDS

    # ------------------------------------------------------------ leadership

    def acquire_leadership(self) -> bool:
        """One submitter per database, whatever the number of gateway processes. PostgreSQL:
        a session advisory lock, released by the database when the holder's connection dies.
        SQLite: an exclusive lock on a file beside the database, released by the kernel when
        the holder dies."""
        if self.rt.engine.dialect.name != "postgresql":
            if self._lock_file is None:
                handle = open(self.rt.data_dir / "submitter.lock", "a+b")  # noqa: SIM115 - held while leading
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    handle.close()
                    self.is_leader = False
                    return False
                self._lock_file = handle
            self.is_leader = True
            return True
        if self._lock_conn is None:
            self._lock_conn = self.rt.engine.connect()
        try:
            got = bool(
                self._lock_conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": ADVISORY_LOCK_KEY}).scalar()
            )
            self._lock_conn.commit()
        except Exception:  # noqa: BLE001 - a broken connection simply means "not the leader now"
            self._lock_conn = None
            got = False
        self.is_leader = got
        return got

    def someone_leads(self) -> bool:
        """Whether any process (this one or another) holds the submitter lock right now: for
        /healthz, since with several processes or `--submitter-process` the one answering
        is seldom the submitter. Looks without taking the lock for longer than a moment."""
        if self.is_leader:
            return True
        if self.rt.engine.dialect.name == "postgresql":
            with self.rt.engine.connect() as conn:
                return bool(conn.execute(_ADVISORY_HELD, {"k": ADVISORY_LOCK_KEY}).scalar())
        with open(self.rt.data_dir / "submitter.lock", "a+b") as handle:
            try:  # a shared lock is refused while someone holds the exclusive one
                fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            return False

    def release(self) -> None:
        if self._lock_conn is not None:
            self._lock_conn.close()
            self._lock_conn = None
        if self._lock_file is not None:
            self._lock_file.close()  # closing the file releases the lock
            self._lock_file = None
        self.is_leader = False

    # ------------------------------------------------------------ main loop

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                if not self.acquire_leadership():
                    stop.wait(1.0)
                    continue
                busy = self.step()
            except Exception:  # noqa: BLE001 - keep serving; the next round retries from the database
                log.exception("submitter round failed; retrying")
                busy = False
                stop.wait(1.0)
            if not busy:
                # Sleep until a filling batch's window ends or, with nothing queued, until this
                # process accepts new work or the poll interval passes (other processes' work).
                pause = max(0.001, min(self.idle_poll, self._next_wake - time.monotonic()))
                if self._filling:
                    stop.wait(pause)
                else:
                    self.rt.work_ready.wait(pause)
                    self.rt.work_ready.clear()
        self.release()

    def step(self) -> bool:
        """One round: follow what is in flight, confirm, then submit new batches."""
        self._next_wake, self._filling = time.monotonic() + self.idle_poll, False
        busy = self.track()
        busy = self.confirm() or busy
        for kind in KINDS:
            busy = self.submit(kind) or busy
        return busy

    # ------------------------------------------------------------ submitting

    def submit(self, kind: str) -> bool:
        if time.monotonic() < self._paused_until.get(kind, 0):
            return False
        # Read, then talk to the chain with no database lock held, then write in one short
        # transaction: API requests never wait behind an RPC call.
        with self.rt.sessions() as session:
            conn = session.connection()
            # First only the queue's shape (this runs many times while a batch fills up).
            queued = conn.execute(_QUEUED, {"kind": kind, "limit": self.batch_max}).all()
            if not queued:
                return False
            oldest = queued[0].created_at
            age = (datetime.now(UTC) - (oldest if oldest.tzinfo else oldest.replace(tzinfo=UTC))).total_seconds()
            if len(queued) < self.batch_max and age < self.window:
                # Let the batch fill up for a moment; wake when its window ends.
                self._next_wake = min(self._next_wake, time.monotonic() + self.window - age)
                self._filling = True
                return False
            bounds = {"kind": kind, "first": queued[0].seq, "last": queued[-1].seq, "limit": self.batch_max}
            ops = conn.execute(_BATCH_ROWS, bounds).all()
            data = self._calldata(session, kind, ops)
            nonce = self._next_nonce(session)
        sender = self.rt.relayer
        try:
            raw, _ = sender.sign(self.rt.ledger.address, data, nonce=nonce, gas=gas_limit(kind, len(ops)))
        except LedgerRevert as exc:
            # The whole batch would revert (e.g. the ledger is paused): keep the operations
            # accepted and try again later.
            log.warning("batch of %d %s would revert: %s; retrying in 5 s", len(ops), kind, exc.error)
            self._paused_until[kind] = time.monotonic() + 5
            return False
        tx_hash = "0x" + keccak(raw).hex()
        seqs = [op.seq for op in ops]
        with self.rt.writes.begin() as session:
            batch = Batch(
                kind=kind,
                sender=sender.address,
                nonce=nonce,
                raw_tx="0x" + raw.hex(),
                tx_hash=tx_hash,
                status="signed",
                size=len(ops),
            )
            session.add(batch)
            session.flush()
            session.connection().execute(
                _SUBMITTED,
                [{"b_seq": seq, "b_batch": batch.id, "b_index": i, "b_tx": tx_hash} for i, seq in enumerate(seqs)],
            )
        # Stored and committed: only now does the transaction leave this process.
        self._broadcast(raw)
        return True

    def _next_nonce(self, session: Session) -> int:
        sender = self.rt.relayer.address
        stored = session.scalar(select(func.max(Batch.nonce)).where(Batch.sender == sender))
        chain = _int(rpc(self.rt.chain.w3, "eth_getTransactionCount", [sender, "pending"]))
        # Another key user (the operator sharing the key) may have moved the chain's count on.
        return max(chain, (stored + 1) if stored is not None else 0)

    def _broadcast(self, raw: bytes) -> None:
        try:
            rpc(self.rt.chain.w3, "eth_sendRawTransaction", ["0x" + raw.hex()])
        except ChainError as exc:
            message = str(exc).lower()
            if "already known" in message or "nonce too low" in message or "known transaction" in message:
                return  # it is in the pool or mined: tracking will see it
            log.warning("broadcast failed (%s); it will be sent again", exc)

    def _calldata(self, session: Session, kind: str, ops: Sequence[Any]) -> bytes:
        addresses = dict(
            session.execute(
                select(Member.member_id, Member.address).where(Member.member_id.in_({op.member_id for op in ops}))
            ).all()
        )
        items: list[Any] = []
        for op in ops:
            sig = CompactSignature.from_bytes(bytes.fromhex(op.signature[2:]))
            ref = bytes.fromhex(op.receipt_ref[2:])
            nonce = int(op.nonce)
            if kind == "earn":
                items.append(
                    SignedEarn(
                        EarnMessage(
                            op.partner_id, addresses[op.member_id], int(op.amount_minor or 0), ref, nonce, op.deadline
                        ),
                        sig,
                    ).as_tuple()
                )
            elif kind == "redemption":
                items.append(
                    SignedRedeem(
                        RedeemMessage(
                            addresses[op.member_id], op.partner_id, int(op.points or 0), ref, nonce, op.deadline
                        ),
                        sig,
                    ).as_tuple()
                )
            else:
                earn = session.scalar(select(Operation).where(Operation.id == op.original_id))
                assert earn is not None and earn.earn_batch_id is not None
                record = EarnRecord(
                    int(earn.earn_batch_id),
                    earn.partner_id,
                    addresses[op.member_id],
                    bytes.fromhex(earn.receipt_ref[2:]),
                    int(earn.amount_minor or 0),
                    int(earn.points or 0),
                    int(earn.earn_month or 0),
                    [bytes.fromhex(h[2:]) for h in json.loads(earn.earn_proof or "[]")],
                )
                message = ReverseMessage(op.partner_id, record.leaf(), int(op.points or 0), ref, nonce, op.deadline)
                items.append(SignedReverse(message, sig, record).as_tuple())
        return self.rt.ledger.encode_call(FUNCTIONS[kind], items)

    # ------------------------------------------------------------ following transactions

    def track(self) -> bool:
        """Reads receipts of broadcast batches; broadcasts again what the node has lost."""
        with self.rt.sessions() as session:
            pending = session.execute(
                select(Batch.id, Batch.tx_hash, Batch.raw_tx).where(Batch.status == "signed").order_by(Batch.nonce)
            ).all()
        busy = False
        for batch in pending:
            receipt = rpc(self.rt.chain.w3, "eth_getTransactionReceipt", [batch.tx_hash])
            if not receipt:
                if rpc(self.rt.chain.w3, "eth_getTransactionByHash", [batch.tx_hash]) is None:
                    self._broadcast(bytes.fromhex(batch.raw_tx[2:]))
                continue
            self._apply(batch.id, receipt)
            busy = True
        return busy

    def _apply(self, batch_id: int, receipt: Any) -> None:
        status = _int(receipt["status"])
        block_number = _int(receipt["blockNumber"])
        block_hash = HexBytes(receipt["blockHash"]).to_0x_hex()
        block = rpc(self.rt.chain.w3, "eth_getBlockByNumber", [hex(block_number), False])
        month = month_of(_int(block["timestamp"]))
        self.rt.chain_time = max(self.rt.chain_time, _int(block["timestamp"]))
        touched: list[str] = []
        with self.rt.writes.begin() as session:
            batch = session.get(Batch, batch_id)
            assert batch is not None
            ops = session.execute(
                select(OPS.c.seq, OPS.c.created_at).where(OPS.c.batch_id == batch_id).order_by(OPS.c.batch_index)
            ).all()
            batch.block_number, batch.block_hash, batch.mined_at = block_number, block_hash, datetime.now(UTC)
            conn = session.connection()
            if status != 1:
                # The whole transaction reverted: nothing happened on-chain. The operations go
                # back to the queue and will ride in a new transaction with a new nonce.
                batch.status = "reverted"
                conn.execute(
                    update(OPS)
                    .where(OPS.c.batch_id == batch_id)
                    .values(status="accepted", batch_id=None, batch_index=None, tx_hash=None)
                )
                self._paused_until[batch.kind] = time.monotonic() + 5
                log.warning("batch %s reverted; %d operations queued again", batch.tx_hash, len(ops))
                return
            batch.status = "confirmed" if self.confirmations == 0 else "mined"
            self._fresh_mined = True  # the next round looks at its depth, whatever the head
            events = [e for log_ in receipt["logs"] if (e := self._decoder.decode(log_, RESULTS)) is not None]
            rejected, accepted = self._results(batch.kind, [op.seq for op in ops], events, month)
            where = {"b_block": block_number, "b_hash": block_hash}
            if rejected:
                conn.execute(_REJECT, [{**row, **where} for row in rejected])
            if accepted:
                state = "confirmed" if self.confirmations == 0 else "submitted"
                conn.execute(_RESULT, [{**row, **where, "b_status": state} for row in accepted])
            touched = sorted({e.args["member"] for e in events if "member" in e.args})
            if self.confirmations == 0:
                self.metrics.add("operations_confirmed_total", len(accepted))
                confirmed = {row["b_seq"] for row in accepted}
                self._latency([op.created_at for op in ops if op.seq in confirmed])
        # After the commit, with no database lock held: the tiers these members have now.
        self.rt.refresh_tiers(touched, block_number)

    def _results(
        self, kind: str, seqs: list[int], events: list[LedgerEvent], month: int
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The rows of a mined batch's operations: (rejected ones, accepted ones), from its events."""
        reasons = {e.args["index"]: decode_error(e.args["reason"]) for e in events if e.name == "OperationRejected"}
        results = iter(e for e in events if e.name == RESULT_EVENTS[kind])
        rejected: list[dict[str, Any]] = []
        accepted: list[dict[str, Any]] = []
        accepted_events: list[LedgerEvent] = []
        for index, seq in enumerate(seqs):
            if index in reasons:
                error = reasons[index]
                rejected.append({"b_seq": seq, "b_code": _snake(error.name), "b_message": str(error)})
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
                }
            )
            accepted_events.append(event)
        self.metrics.add("operations_rejected_total", len(rejected))
        if kind == "earn" and accepted:
            committed = next(e for e in events if e.name == "EarnBatchCommitted")
            records = earn_records(int(committed.args["batchId"]), month, accepted_events)
            for row, record in zip(accepted, records, strict=True):
                row.update(
                    b_earn_batch=record.batch_id,
                    b_earn_month=month,
                    b_earn_proof=json.dumps(["0x" + p.hex() for p in record.proof]),
                )
        return rejected, accepted

    def _latency(self, accepted_at: list[datetime]) -> None:
        now = datetime.now(UTC)
        self.metrics.observe("submit_to_confirm_seconds", ((now - t).total_seconds() for t in accepted_at))

    # ------------------------------------------------------------ confirmations and reorgs

    def _canonical_hashes(self, latest: Any, numbers: set[int]) -> dict[int, str | None]:
        """Canonical block hashes at `numbers`, asking the chain as little as possible.

        Hashes verified earlier are kept: when the new head's parent is the block we knew at
        that height, every block we knew below it is still canonical (each block commits to
        its parent). Otherwise (a reorg, or several blocks since the last look) the blocks
        in question are read again, in one round trip, with no database lock held."""
        number, block_hash = _int(latest["number"]), HexBytes(latest["hash"]).to_0x_hex()
        parent = HexBytes(latest["parentHash"]).to_0x_hex()
        if self._canonical.get(number - 1) != parent:
            self._canonical.clear()
        self._canonical[number] = block_hash
        missing = sorted(n for n in numbers if n not in self._canonical)
        blocks = rpc_many(self.rt.chain.w3, [("eth_getBlockByNumber", [hex(n), False]) for n in missing])
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
        if self._last_head[0] < 0:  # just started: only the window below today's head counts
            self._last_head = (_int(rpc(self.rt.chain.w3, "eth_blockNumber", [])), "")
        near = self._last_head[0] - REORG_WINDOW
        with self.rt.sessions() as session:
            candidates = session.execute(
                select(Batch.id, Batch.block_number, Batch.block_hash, Batch.status).where(
                    (Batch.status == "mined") | ((Batch.status == "confirmed") & (Batch.block_number > near))
                )
            ).all()
        if not candidates:
            return False
        latest = rpc(self.rt.chain.w3, "eth_getBlockByNumber", ["latest", False])
        seen = (_int(latest["number"]), HexBytes(latest["hash"]).to_0x_hex())
        if seen == self._last_head and not self._fresh_mined:
            return False
        head = seen[0]
        self._last_head, self._fresh_mined = seen, False
        hashes = self._canonical_hashes(latest, {int(n) for _, n, _, _ in candidates if n is not None})
        verdicts = []
        for batch_id, number, stored_hash, status in candidates:
            assert number is not None
            if hashes.get(int(number)) != stored_hash:
                verdicts.append((batch_id, "reorged"))
            elif status == "mined" and head - number + 1 >= self.confirmations:
                verdicts.append((batch_id, "deep"))
        if not verdicts:
            return False
        with self.rt.writes.begin() as session:
            for batch_id, verdict in verdicts:
                batch = session.get(Batch, batch_id)
                assert batch is not None
                ops = list(session.scalars(select(Operation).where(Operation.batch_id == batch_id)))
                if verdict == "reorged":
                    # Reorged out: back to `signed`; tracking finds it again in the new chain
                    # (or broadcasts it again). Nothing reorged out is reported confirmed.
                    log.warning("batch %s left the canonical chain at block %s", batch.tx_hash, batch.block_number)
                    batch.status, batch.block_number, batch.block_hash = "signed", None, None
                    for op in ops:
                        op.status, op.block_number, op.block_hash, op.log_index = "submitted", None, None, None
                        op.error_code = op.error_message = None
                else:
                    batch.status = "confirmed"
                    deep = [op for op in ops if op.status == "submitted"]
                    for op in deep:
                        op.status = "confirmed"
                    self.metrics.add("operations_confirmed_total", len(deep))
                    self._latency([op.created_at for op in deep])
        return True


# Upper bounds of one operation's gas inside a batch (measured 47k-59k; redemptions and
# reversals that sweep a long bucket ring cost more). Only the gas used is paid, so a
# generous limit costs nothing; it saves running every batch twice through eth_estimateGas.
GAS_PER_OPERATION = {"earn": 120_000, "redemption": 250_000, "reversal": 250_000}
GAS_BASE = 150_000


GAS_CAP = 25_000_000  # under a 30M block, the common limit of EVM chains


def gas_limit(kind: str, size: int) -> int:
    return min(GAS_CAP, GAS_BASE + GAS_PER_OPERATION[kind] * size)


def _int(value: Any) -> int:
    return int(value, 16) if isinstance(value, str) else int(value)


def queue_depth(session: Session) -> int:
    return int(
        session.scalar(
            select(func.count()).select_from(Operation).where(Operation.status.in_(("accepted", "submitted")))
        )
        or 0
    )
