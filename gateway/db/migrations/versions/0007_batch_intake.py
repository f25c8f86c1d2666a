"""batch intake: the batches partners submit (POST /v1/batches) and the operation of each accepted line

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 17:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "intake_batches",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("partner_id", sa.Integer(), sa.ForeignKey("partners.id"), nullable=False),
        sa.Column("content_type", sa.String(32), nullable=False),
        sa.Column("records", sa.Integer(), nullable=False),
        sa.Column("accepted", sa.Integer(), nullable=False),
        sa.Column("refused", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_intake_batches_partner_id", "intake_batches", ["partner_id"])
    op.create_table(
        "intake_records",
        sa.Column("batch_id", sa.String(32), sa.ForeignKey("intake_batches.id"), primary_key=True),
        sa.Column("line", sa.Integer(), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("receipt_id", sa.String(128), nullable=False),
        sa.Column("operation_id", sa.String(32), nullable=False),
    )
    op.create_index("ix_intake_records_operation_id", "intake_records", ["operation_id"])


def downgrade() -> None:
    op.drop_index("ix_intake_records_operation_id", table_name="intake_records")
    op.drop_table("intake_records")
    op.drop_index("ix_intake_batches_partner_id", table_name="intake_batches")
    op.drop_table("intake_batches")
