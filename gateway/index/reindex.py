"""`loyalty reindex`: rebuild the gateway's index from the chain and the stored receipts.

Longer than 400 lines: one rebuild in one transaction; its steps share the connection, the
decoded events and the custody rows.

The database holds two kinds of data (gateway/db/models.py). Custody data exists nowhere
else and is never touched here: API keys, partners' and custodial members' encrypted keys,
PIN hashes, members' ids and addresses, Idempotency-Key answers, and every receipt as it
was accepted (`receipts`: canonical document, signed authorization, operation id, seq,
acceptance time). The index is derived and is rebuilt here: `operations` (each accepted
operation with its on-chain outcome) and `batches` (the transactions that carried them).

For each stored receipt the chain says what became of it: an `Earned`/`Redeemed`/`Reversed`
event carrying its hash (confirmed, or mined if not yet `confirmations` deep), or an
`OperationRejected` carrying it (rejected, with the contract's reason), or nothing
(accepted and never on-chain: it goes back to the submitter's queue, and the contract's
replay protection keeps it from executing twice). Earn batch ids, months and Merkle proofs
are recomputed from the events, so refunds of old earns still work. The partners' on-chain
settings (signer, rate, currency) are refreshed from the chain's events.

While the index still shows operations on their way to the chain (accepted or submitted)
the reindex refuses: let the submitter finish first. On PostgreSQL it also refuses while a
gateway's submitter holds the database's advisory lock.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from eth_account.typed_transactions.typed_transaction import TypedTransaction
from eth_utils import keccak
from hexbytes import HexBytes
from sqlalchemy import Connection, Engine, delete, func, insert, inspect, select, text
from sqlalchemy.orm import Session
from web3 import Web3

from gateway.chain.debt import debt_of, debts_recorded, debts_repaid
from gateway.chain.events import block_headers, fetch_events
from gateway.chain.ledger import Ledger, LedgerEvent, decode_error, earn_records, redemption_records
from gateway.chain.outcomes import KIND_OF_EVENT, KIND_OF_REJECTION, error_code
from gateway.core.errors import Conflict, ErrorCode
from gateway.db.models import Base, Batch, Member, Operation, Partner, StoredReceipt
from gateway.operations.kinds import IN_FLIGHT
from gateway.operations.store import proof_to_column
from gateway.points.rules import month_of
from gateway.submitter.leadership import try_advisory_lock

INDEX_TABLES = [Base.metadata.tables["batches"], Base.metadata.tables["operations"]]


class ReindexRefused(Conflict):
    code = ErrorCode.REINDEX_REFUSED


@dataclass
class ReindexReport:
    from_block: int
    to_block: int
    events: int = 0
    receipts: int = 0  # stored receipts read
    confirmed: int = 0
    mined: int = 0  # on-chain, not yet deep enough: the submitter confirms them
    rejected: int = 0
    requeued: int = 0  # accepted, never on-chain: back in the submitter's queue
    batches: int = 0
    partners_updated: int = 0
    partners_added: int = 0
    foreign_events: int = 0  # domain events carrying no receipt this gateway accepted
    index_was_present: bool = True
    warnings: list[str] = field(default_factory=list)


@dataclass
class _Outcome:
    status: str
    tx_hash: str
    block_number: int
    log_index: int | None = None
    points: int | None = None
    error: tuple[str, str] | None = None
    earn: tuple[int, int, str, int | None] | None = None  # (on-chain batch id, month, proof JSON, index)
    debt: int | None = None  # a confirmed reversal's debt (r2)
    bonus: int | None = None  # a campaign earn's bonus (r2): part of its leaf
    batch: tuple[int, int] | None = None  # (batch row id, index in the batch)


@dataclass
class _Tx:
    """One transaction's items (domain events and rejections, in batch order)."""

    items: list[LedgerEvent] = field(default_factory=list)
    debts: dict[tuple[str, bytes], int] = field(default_factory=dict)  # (r2) its reversals' debt
    repaid: dict[tuple[str, bytes], int] = field(default_factory=dict)  # (r2) its issues' repayments
    committed: LedgerEvent | None = None


def reindex(
    w3: Web3,
    ledger: Ledger,
    engine: Engine,
    *,
    confirmations: int = 0,
    progress: Callable[[int, int], None] | None = None,
    stage: Callable[[str], None] | None = None,
) -> ReindexReport:
    """Rebuilds `operations` and `batches` (creating them if they were dropped) in one
    transaction; the custody tables are read, and only partners' on-chain settings change."""
    say = stage or (lambda _name: None)
    lock = _submitter_lock(engine)
    try:
        tables = set(inspect(engine).get_table_names())
        if "receipts" not in tables:
            raise ReindexRefused("this database has no stored receipts table: migrate it first (loyalty init)")
        present = {"operations", "batches"} <= tables
        if present:
            with Session(engine) as session:
                _refuse_if_pending(session)
        head = int(w3.eth.block_number)
        report = ReindexReport(ledger.deployment_block, head, index_was_present=present)
        say("reading events")
        events = fetch_events(w3, ledger, ledger.deployment_block, head, progress)
        report.events = len(events)
        say("reading blocks and transactions")
        txs = _transactions(events)
        headers = block_headers(w3, {e.block_number for tx in txs.values() for e in tx.items})
        # Read before the write transaction: no lock is held while the node answers.
        sent = {tx_hash: w3.eth.get_transaction(tx_hash) for tx_hash in txs}  # type: ignore[arg-type]
        say("rebuilding the index")
        with engine.begin() as conn:
            _lock_tables(conn)
            Base.metadata.create_all(conn, tables=INDEX_TABLES)
            with Session(conn) as session:
                if present:
                    _refuse_if_pending(session)  # again, now that writers wait for us
                stored = list(session.scalars(select(StoredReceipt).order_by(StoredReceipt.seq)))
                addresses: dict[str, str] = dict(session.execute(select(Member.member_id, Member.address)).all())
            report.receipts = len(stored)
            outcomes, batches = _outcomes(txs, sent, headers, stored, addresses, head, confirmations, report)
            conn.execute(delete(Operation))
            conn.execute(delete(Batch))
            if batches:
                conn.execute(insert(Batch), batches)
            rows = [_operation_row(r, outcomes.get(r.operation_id), batches) for r in stored]
            if rows:
                conn.execute(insert(Operation), rows)
            _partners(conn, events, report)
            _reset_sequences(conn)
        statuses = Counter(row["status"] for row in rows)
        report.batches = len(batches)
        report.confirmed, report.mined = statuses["confirmed"], statuses["submitted"]
        report.rejected, report.requeued = statuses["rejected"], statuses["accepted"]
        return report
    finally:
        if lock is not None:
            lock.close()


# ------------------------------------------------------------------ guards


def _submitter_lock(engine: Engine) -> Connection | None:
    """PostgreSQL: the submitter's advisory lock, so that no gateway submits meanwhile."""
    if engine.dialect.name != "postgresql":
        return None
    conn = engine.connect()
    if not try_advisory_lock(conn):
        conn.close()
        raise ReindexRefused("a gateway's submitter is running on this database: stop the gateway first")
    return conn


def _lock_tables(conn: Connection) -> None:
    """Writers wait while the index is rebuilt (SQLite: the writer engine's BEGIN IMMEDIATE)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("LOCK TABLE receipts IN EXCLUSIVE MODE"))


def _refuse_if_pending(session: Session) -> None:
    pending = int(
        session.scalar(select(func.count()).select_from(Operation).where(Operation.status.in_(IN_FLIGHT))) or 0
    )
    if pending:
        raise ReindexRefused(
            f"{pending} operations are still on their way to the chain (accepted or submitted): "
            "let the gateway's submitter finish, then reindex"
        )


# ------------------------------------------------------------------ the chain's side


_DEBT_KINDS = frozenset({"reversal", "earn", "award", "refund"})  # (r2) operations.debt


def _transactions(events: list[LedgerEvent]) -> dict[str, _Tx]:
    txs: dict[str, _Tx] = {}
    for e in events:
        if e.name in KIND_OF_EVENT or e.name == "OperationRejected":
            txs.setdefault(e.tx_hash, _Tx()).items.append(e)
        elif e.name in ("EarnBatchCommitted", "RedeemBatchCommitted"):
            txs.setdefault(e.tx_hash, _Tx()).committed = e
        elif e.name == "DebtRecorded":
            txs.setdefault(e.tx_hash, _Tx()).debts.update(debts_recorded([e]))
        elif e.name == "DebtRepaid":
            txs.setdefault(e.tx_hash, _Tx()).repaid.update(debts_repaid([e]))
    return txs


def _earn_proofs(tx: _Tx, month: int) -> dict[int, tuple[int, int, str, int | None]]:
    """log index of each Earned or Awarded -> (batch id, month, proof JSON, None), and of each
    Redeemed (r2) -> (redeem batch id, latest expiry month burnt, proof JSON, place in the
    batch), as the submitter builds them."""
    if tx.committed is None:
        return {}
    args = tx.committed.args
    if tx.committed.name == "RedeemBatchCommitted":
        redeemed = [e for e in tx.items if e.name == "Redeemed"]
        burnt = redemption_records(int(args["batchId"]), list(args["expiryMonths"]), redeemed)
        return {
            e.log_index: (r.batch_id, r.expiry_month, proof_to_column(r.proof), r.index)
            for e, r in zip(redeemed, burnt, strict=True)
        }
    earned = [e for e in tx.items if e.name in ("Earned", "Awarded")]
    if not earned:
        return {}
    records = earn_records(int(args["batchId"]), month, earned)
    return {
        e.log_index: (r.batch_id, month, proof_to_column(r.proof), None) for e, r in zip(earned, records, strict=True)
    }


def _raw_transaction(tx: Any) -> str:
    """The signed transaction's bytes, rebuilt from its fields (checked against its hash)."""
    try:
        fields = {
            "type": tx["type"],
            "chainId": tx["chainId"],
            "nonce": tx["nonce"],
            "maxPriorityFeePerGas": tx["maxPriorityFeePerGas"],
            "maxFeePerGas": tx["maxFeePerGas"],
            "gas": tx["gas"],
            "to": tx["to"],
            "value": tx["value"],
            "data": tx["input"],
            "accessList": tx.get("accessList", []),
            "v": tx.get("yParity", tx["v"]),
            "r": tx["r"],
            "s": tx["s"],
        }
        raw = TypedTransaction.from_dict(fields).encode()
    except (KeyError, TypeError, ValueError):
        return ""
    return "0x" + raw.hex() if keccak(raw) == bytes(HexBytes(tx["hash"])) else ""


def _outcomes(
    txs: dict[str, _Tx],
    sent: dict[str, Any],
    headers: dict[int, tuple[int, str]],
    stored: list[StoredReceipt],
    addresses: dict[str, str],
    head: int,
    confirmations: int,
    report: ReindexReport,
) -> tuple[dict[str, _Outcome], list[dict[str, Any]]]:
    by_ref: dict[tuple[str, str], list[StoredReceipt]] = {}
    for r in stored:
        by_ref.setdefault((r.receipt_ref, r.kind), []).append(r)
        if "0x" + keccak(r.receipt_doc.encode()).hex() != r.receipt_ref:
            report.warnings.append(
                f"the stored receipt of operation {r.operation_id} does not hash to its reference "
                "(copied as it is; `loyalty audit verify` names it)"
            )
    outcomes: dict[str, _Outcome] = {}
    batches: list[dict[str, Any]] = []
    positions: dict[tuple[str, str], tuple[int, int]] = {}  # (operation, tx) -> (batch row id, index)
    for tx_hash, tx in txs.items():
        number = tx.items[0].block_number if tx.items else 0
        timestamp, block_hash = headers.get(number, (0, ""))
        deep = head - number + 1 >= confirmations
        proofs = _earn_proofs(tx, month_of(timestamp)) if timestamp else {}
        mine: list[tuple[int, StoredReceipt]] = []
        kinds = set()
        for index, e in enumerate(tx.items):
            ref = "0x" + bytes(e.args["receiptRef"]).hex()
            if e.name == "OperationRejected":
                kind = KIND_OF_REJECTION.get(int(e.args["kind"]), "")
                receipt = next(iter(by_ref.get((ref, kind), [])), None)
                if receipt is None:
                    continue
                if int(e.args["index"]) != index:
                    report.warnings.append(f"tx {tx_hash}: rejection {e.args['index']} found at item {index}")
                error = decode_error(e.args["reason"])
                if receipt.operation_id not in outcomes or outcomes[receipt.operation_id].status == "rejected":
                    outcomes[receipt.operation_id] = _Outcome(
                        "rejected", tx_hash, number, error=(error_code(error.name), str(error))
                    )
            else:
                kind = KIND_OF_EVENT[e.name]
                receipt = next((r for r in by_ref.get((ref, kind), []) if r.partner_id == e.args["partnerId"]), None)
                if receipt is None:
                    report.foreign_events += 1
                    continue
                member = addresses.get(receipt.member_id, "")
                if member.lower() != str(e.args["member"]).lower():
                    report.warnings.append(
                        f"operation {receipt.operation_id}: the chain names {e.args['member']}, "
                        f"member {receipt.member_id} is {member or 'unknown'}"
                    )
                outcomes[receipt.operation_id] = _Outcome(
                    "confirmed" if deep else "submitted",
                    tx_hash,
                    number,
                    log_index=e.log_index,
                    points=int(e.args["points"]),
                    earn=proofs.get(e.log_index),
                    debt=debt_of(e, tx.debts if kind == "reversal" else tx.repaid) if kind in _DEBT_KINDS else None,
                    bonus=int(e.args["bonus"]) if int(e.args.get("campaignId", 0)) else None,
                )
            kinds.add(kind)
            mine.append((index, receipt))
        if not mine:
            continue  # not this gateway's transaction
        if len(kinds) != 1:
            report.warnings.append(f"tx {tx_hash} mixes operation kinds {sorted(kinds)}")
        chain_tx = sent[tx_hash]
        batch_id = len(batches) + 1
        batches.append(
            {
                "id": batch_id,
                "kind": mine[0][1].kind,
                "sender": chain_tx["from"],
                "nonce": int(chain_tx["nonce"]),
                "raw_tx": _raw_transaction(chain_tx),
                "tx_hash": tx_hash,
                "status": "confirmed" if deep else "mined",
                "size": len(tx.items),
                "block_number": number,
                "block_hash": block_hash,
                "created_at": datetime.fromtimestamp(timestamp, UTC),
                "mined_at": datetime.fromtimestamp(timestamp, UTC),
            }
        )
        for index, receipt in mine:
            positions[(receipt.operation_id, tx_hash)] = (batch_id, index)
    for operation_id, outcome in outcomes.items():
        outcome.batch = positions.get((operation_id, outcome.tx_hash))
    return outcomes, batches


def _operation_row(r: StoredReceipt, outcome: _Outcome | None, batches: list[dict[str, Any]]) -> dict[str, Any]:
    row: dict[str, Any] = {
        "seq": r.seq,
        "id": r.operation_id,
        "kind": r.kind,
        "partner_id": r.partner_id,
        "member_id": r.member_id,
        "receipt_id": r.receipt_id,
        "status": "accepted",
        "receipt_doc": r.receipt_doc,
        "receipt_ref": r.receipt_ref,
        "amount_minor": r.amount_minor,
        "currency": r.currency,
        "points": r.points,
        "nonce": r.nonce,
        "deadline": r.deadline,
        "signature": r.signature,
        "original_id": r.original_id,
        "reason": r.reason,
        "member_address": r.member_address,
        "campaign_id": r.campaign_id,
        "bonus": None,
        "batch_id": None,
        "batch_index": None,
        "tx_hash": None,
        "block_number": None,
        "block_hash": None,
        "log_index": None,
        "earn_batch_id": None,
        "earn_month": None,
        "earn_proof": None,
        "commit_index": None,
        "debt": None,
        "error_code": None,
        "error_message": None,
        "created_at": r.accepted_at,
        "updated_at": datetime.now(UTC),
    }
    if outcome is None:
        return row  # never reached the chain: queued again
    batch = outcome.batch
    row.update(
        status=outcome.status,
        tx_hash=outcome.tx_hash,
        block_number=outcome.block_number,
        block_hash=batches[batch[0] - 1]["block_hash"] if batch else None,
        batch_id=batch[0] if batch else None,
        batch_index=batch[1] if batch else None,
        log_index=outcome.log_index,
    )
    if outcome.points is not None:
        row["points"] = outcome.points
    if outcome.error is not None:
        row["error_code"], row["error_message"] = outcome.error
    if outcome.earn is not None:
        row["earn_batch_id"], row["earn_month"], row["earn_proof"], row["commit_index"] = outcome.earn
    row["debt"] = outcome.debt
    row["bonus"] = outcome.bonus
    return row


# ------------------------------------------------------------------ partners


def _partners(conn: Connection, events: list[LedgerEvent], report: ReindexReport) -> None:
    """Partners' on-chain settings from their events; a partner the chain knows and the
    database does not gets a row (no name or key: the gateway never held them)."""
    chain: dict[int, dict[str, Any]] = {}
    for e in events:
        a = e.args
        if e.name == "PartnerAdded":
            chain[a["partnerId"]] = {"signer_address": a["signer"], "currency": bytes(a["currency"]).decode()}
        elif e.name == "PartnerUpdated" and a["partnerId"] in chain:
            chain[a["partnerId"]].update(
                signer_address=a["signer"], rate_points=a["ratePoints"], rate_per_minor_units=a["ratePerMinorUnits"]
            )
    with Session(conn) as session:
        rows = {p.id: p for p in session.scalars(select(Partner))}
        for pid, settings in sorted(chain.items()):
            row = rows.get(pid)
            if row is None:
                session.add(
                    Partner(
                        id=pid,
                        name=f"partner {pid} (from the chain)",
                        managed=False,
                        encrypted_key=None,
                        rate_points=settings.get("rate_points", 1),
                        rate_per_minor_units=settings.get("rate_per_minor_units", 1),
                        signer_address=settings["signer_address"],
                        currency=settings["currency"],
                    )
                )
                report.partners_added += 1
                continue
            changed = False
            for column, value in settings.items():
                if getattr(row, column) != value:
                    setattr(row, column, value)
                    changed = True
            report.partners_updated += changed
        session.flush()


def _reset_sequences(conn: Connection) -> None:
    """PostgreSQL: rows came with their ids; new ones must continue after them."""
    if conn.dialect.name != "postgresql":
        return
    for table, column in (("operations", "seq"), ("batches", "id")):
        conn.execute(
            text(
                f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), "
                f"COALESCE(MAX({column}), 1), MAX({column}) IS NOT NULL) FROM {table}"
            )
        )
