"""The batch-intake tables: a partner's submitted batch, and which operation each accepted
line became.

Custody, like the receipts: written in the transaction that accepts the batch's operations
and never changed; a line's status is read from its operation. `operation_id` carries no
foreign key, since `loyalty reindex` rebuilds the operations index (with the same ids).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from gateway.db.models import Base, UTCDateTime, utcnow


class IntakeBatch(Base):
    __tablename__ = "intake_batches"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id"), index=True)
    content_type: Mapped[str] = mapped_column(String(32))
    records: Mapped[int] = mapped_column(Integer)  # records read, accepted or refused
    accepted: Mapped[int] = mapped_column(Integer)
    # The refused records as answered ({line, code, message, receipt_id?}, JSON): none of them
    # left an operation, a receipt or a nonce; they are kept so GET can say why again.
    refused: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class IntakeRecord(Base):
    __tablename__ = "intake_records"

    batch_id: Mapped[str] = mapped_column(ForeignKey("intake_batches.id"), primary_key=True)
    line: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    receipt_id: Mapped[str] = mapped_column(String(128))
    operation_id: Mapped[str] = mapped_column(String(32), index=True)
