"""The gateway's tables, in two groups.

Custody (kept, backed up; nothing else has it): API keys, partners, members (with the
encrypted keys and PIN hashes), the receipts as accepted, and the Idempotency-Key answers.
Index (derived; `loyalty reindex` rebuilds it from the chain and the stored receipts):
operations (the outbox and their on-chain outcome) and batches.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator, TypeEngine


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every database: SQLite keeps no zone, so what it
    returns is marked UTC here (everything is written in UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    pass


class Uint256(TypeDecorator[Decimal]):
    """A uint256 (a signature's nonce): NUMERIC(78, 0) where that is exact (PostgreSQL).

    SQLite's NUMERIC keeps integers only up to 2**63 and silently turns larger ones (even
    when given as decimal text) into floats, so a self-custody signer's nonce came back
    changed and its signature failed on-chain. There it is stored as 0x-hex text, which no
    column affinity converts. Rows written as numbers before still read back.
    """

    impl = Numeric(78, 0)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(80))
        return dialect.type_descriptor(Numeric(78, 0))

    def process_bind_param(self, value: Decimal | int | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        return hex(int(value)) if dialect.name == "sqlite" else Decimal(int(value))

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        if isinstance(value, str) and value.startswith("0x"):
            return Decimal(int(value, 16))
        return Decimal(int(value))


class ApiKey(Base):
    """An API key: only its SHA-256 is kept (keys are 256-bit random, so no slow KDF is needed)."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    partner_id: Mapped[int | None] = mapped_column(ForeignKey("partners.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Partner(Base):
    """A partner; `id` is its on-chain partner id."""

    __tablename__ = "partners"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(String(200))
    currency: Mapped[str] = mapped_column(String(3))
    rate_points: Mapped[int] = mapped_column(BigInteger)
    rate_per_minor_units: Mapped[int] = mapped_column(BigInteger)
    signer_address: Mapped[str] = mapped_column(String(42))
    managed: Mapped[bool] = mapped_column(Boolean)
    encrypted_key: Mapped[str | None] = mapped_column(Text)  # keystore JSON under the KEK
    next_nonce: Mapped[int] = mapped_column(BigInteger, default=1)  # for signatures the gateway makes
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Member(Base):
    __tablename__ = "members"

    member_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    address: Mapped[str] = mapped_column(String(42), unique=True)
    custodial: Mapped[bool] = mapped_column(Boolean)
    encrypted_key: Mapped[str | None] = mapped_column(Text)
    pin_hash: Mapped[str | None] = mapped_column(String(200))
    failed_pin_attempts: Mapped[int] = mapped_column(Integer, default=0)
    locked: Mapped[bool] = mapped_column(Boolean, default=False)
    next_nonce: Mapped[int] = mapped_column(BigInteger, default=1)
    enrolled_by: Mapped[int] = mapped_column(ForeignKey("partners.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class PinFailure(Base):
    """Wrong PINs in a row for one member at one partner: MAX_PIN_ATTEMPTS lock the PIN there
    only (gateway/accounts/members.py), so one partner's key cannot lock a member out of the
    whole coalition."""

    __tablename__ = "pin_failures"

    member_id: Mapped[str] = mapped_column(ForeignKey("members.member_id"), primary_key=True)
    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id"), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    locked: Mapped[bool] = mapped_column(Boolean, default=False)


class StoredReceipt(Base):
    """An operation exactly as it was accepted: the canonical receipt and the signed
    authorization. Written in the same transaction as its operation row and never changed;
    the index rebuilds that row from this and the chain (`loyalty reindex`)."""

    __tablename__ = "receipts"
    __table_args__ = (UniqueConstraint("partner_id", "kind", "receipt_id", name="uq_receipt_partner_kind"),)

    operation_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, unique=True)  # the operation's acceptance order
    kind: Mapped[str] = mapped_column(String(16))
    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id"))
    member_id: Mapped[str] = mapped_column(ForeignKey("members.member_id"))
    receipt_id: Mapped[str] = mapped_column(String(128))
    receipt_doc: Mapped[str] = mapped_column(Text)
    receipt_ref: Mapped[str] = mapped_column(String(66), index=True)
    amount_minor: Mapped[int | None] = mapped_column(BigInteger)
    currency: Mapped[str | None] = mapped_column(String(3))
    points: Mapped[int | None] = mapped_column(BigInteger)  # as quoted (earn) or asked (others)
    nonce: Mapped[Decimal] = mapped_column(Uint256())
    deadline: Mapped[int] = mapped_column(BigInteger)
    signature: Mapped[str] = mapped_column(String(130))
    original_id: Mapped[str | None] = mapped_column(String(32))  # a reversal's earn (no FK: the index may be gone)
    reason: Mapped[str | None] = mapped_column(Text)
    # (r2, migration 0006) The member's address the operation was signed for: a member may
    # migrate to a new address afterwards. None in receipts from before.
    member_address: Mapped[str | None] = mapped_column(String(42))
    campaign_id: Mapped[int | None] = mapped_column(BigInteger)  # (r2, migration 0008) an earn's campaign
    accepted_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Operation(Base):
    """One accepted write: the outbox row the submitter turns into a batch entry."""

    __tablename__ = "operations"
    __table_args__ = (
        UniqueConstraint("partner_id", "kind", "receipt_id", name="uq_operation_receipt"),
        Index("ix_operations_status_created", "status", "created_at"),
        Index("ix_operations_member_created", "member_id", "created_at"),
        # A member's activity (newest first) and a partner's feed (oldest first) page by seq
        # (migration 0005): with a million operations, without them a page sorts them all.
        Index("ix_operations_partner_seq", "partner_id", "seq", "created_at"),
        Index("ix_operations_member_seq", "member_id", "seq"),
        # Where a partner's feed from a date starts (migration 0009; gateway/operations/feed.py).
        Index("ix_operations_partner_created", "partner_id", "created_at", "seq"),
        # A partner's feed filtered by status (migration 0010): the rejected are 2% of it.
        Index("ix_operations_partner_status", "partner_id", "status", "seq"),
    )

    # Acceptance order (batches are filled oldest first); `id` is the public operation id.
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(32), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # see gateway.operations.kinds.Kind
    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id"))
    member_id: Mapped[str] = mapped_column(ForeignKey("members.member_id"))
    receipt_id: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16))  # accepted | submitted | confirmed | rejected
    receipt_doc: Mapped[str] = mapped_column(Text)  # canonical JSON; its keccak is receipt_ref
    receipt_ref: Mapped[str] = mapped_column(String(66))
    amount_minor: Mapped[int | None] = mapped_column(BigInteger)
    currency: Mapped[str | None] = mapped_column(String(3))
    points: Mapped[int | None] = mapped_column(BigInteger)
    nonce: Mapped[Decimal] = mapped_column(Uint256())
    deadline: Mapped[int] = mapped_column(BigInteger)
    signature: Mapped[str] = mapped_column(String(130))
    original_id: Mapped[str | None] = mapped_column(ForeignKey("operations.id"))  # a reversal's earn
    reason: Mapped[str | None] = mapped_column(Text)  # a reversal's or refund's stated reason, an award's code
    member_address: Mapped[str | None] = mapped_column(String(42))  # the address signed for (r2)
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("batches.id"), index=True)
    batch_index: Mapped[int | None] = mapped_column(Integer)
    tx_hash: Mapped[str | None] = mapped_column(String(66))
    block_number: Mapped[int | None] = mapped_column(BigInteger)
    block_hash: Mapped[str | None] = mapped_column(String(66))
    log_index: Mapped[int | None] = mapped_column(Integer)
    # The on-chain batch commitment of a confirmed earn or award (batch id, month, proof: what a
    # reversal proves it with) or redemption (redeem batch id, the latest expiry month it burnt,
    # proof, and `commit_index`, its place among the batch's accepted ones: what a refund proves).
    earn_batch_id: Mapped[int | None] = mapped_column(BigInteger)
    earn_month: Mapped[int | None] = mapped_column(Integer)
    earn_proof: Mapped[str | None] = mapped_column(Text)  # JSON list of hex siblings
    commit_index: Mapped[int | None] = mapped_column(Integer)
    debt: Mapped[int | None] = mapped_column(BigInteger)  # a confirmed reversal's shortfall recorded as debt
    # (r2, migration 0008) The campaign an earn names, and its bonus (included in `points`):
    # the gateway's estimate at acceptance, the `Earned` event's once confirmed.
    campaign_id: Mapped[int | None] = mapped_column(BigInteger)
    bonus: Mapped[int | None] = mapped_column(BigInteger)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class CampaignName(Base):
    """(r2, migration 0008) A campaign's name: the ledger holds its terms, not what it is called."""

    __tablename__ = "campaign_names"

    campaign_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id"))
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class IdempotencyRecord(Base):
    """The first response to an Idempotency-Key, stored in the same transaction as its effect."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("scope", "key", name="uq_idempotency_scope_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    scope: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    response_body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Batch(Base):
    """A signed transaction carrying operations. Written before it is broadcast."""

    __tablename__ = "batches"
    __table_args__ = (UniqueConstraint("sender", "nonce", name="uq_batch_sender_nonce"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))
    sender: Mapped[str] = mapped_column(String(42))
    nonce: Mapped[int] = mapped_column(BigInteger)
    raw_tx: Mapped[str] = mapped_column(Text)
    tx_hash: Mapped[str] = mapped_column(String(66), unique=True)
    status: Mapped[str] = mapped_column(String(16))  # signed | mined | confirmed | reverted
    size: Mapped[int] = mapped_column(Integer)
    block_number: Mapped[int | None] = mapped_column(BigInteger)
    block_hash: Mapped[str | None] = mapped_column(String(66))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    mined_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
