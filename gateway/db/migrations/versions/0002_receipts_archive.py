"""receipts: the operations as accepted, kept apart from the index

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 20:00:00

The custody copy of every accepted operation (canonical receipt and signed authorization),
from which `loyalty reindex` rebuilds `operations` and `batches`. Existing operations are
copied in: their documents, signatures and acceptance times have not changed since.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (
    "seq, kind, partner_id, member_id, receipt_id, receipt_doc, receipt_ref, amount_minor, currency, "
    "points, nonce, deadline, signature, original_id, reason"
)


def upgrade() -> None:
    op.create_table(
        "receipts",
        sa.Column("operation_id", sa.String(length=32), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("partner_id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.String(length=64), nullable=False),
        sa.Column("receipt_id", sa.String(length=128), nullable=False),
        sa.Column("receipt_doc", sa.Text(), nullable=False),
        sa.Column("receipt_ref", sa.String(length=66), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("points", sa.BigInteger(), nullable=True),
        sa.Column("nonce", sa.Numeric(precision=78, scale=0), nullable=False),
        sa.Column("deadline", sa.BigInteger(), nullable=False),
        sa.Column("signature", sa.String(length=130), nullable=False),
        sa.Column("original_id", sa.String(length=32), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["member_id"], ["members.member_id"]),
        sa.ForeignKeyConstraint(["partner_id"], ["partners.id"]),
        sa.PrimaryKeyConstraint("operation_id"),
        sa.UniqueConstraint("partner_id", "kind", "receipt_id", name="uq_receipt_partner_kind"),
        sa.UniqueConstraint("seq"),
    )
    with op.batch_alter_table("receipts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_receipts_receipt_ref"), ["receipt_ref"], unique=False)
    op.execute(
        f"INSERT INTO receipts (operation_id, {COLUMNS}, accepted_at) SELECT id, {COLUMNS}, created_at FROM operations"
    )


def downgrade() -> None:
    with op.batch_alter_table("receipts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_receipts_receipt_ref"))
    op.drop_table("receipts")
