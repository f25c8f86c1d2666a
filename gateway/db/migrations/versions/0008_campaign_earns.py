"""campaigns (r2): the campaign an earn names and the bonus it got, and a campaign's name

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 18:50:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("operations") as batch:
        batch.add_column(sa.Column("campaign_id", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("bonus", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("receipts") as batch:
        batch.add_column(sa.Column("campaign_id", sa.BigInteger(), nullable=True))
    op.create_table(
        "campaign_names",
        sa.Column("campaign_id", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("partner_id", sa.Integer(), sa.ForeignKey("partners.id"), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("campaign_names")
    with op.batch_alter_table("receipts") as batch:
        batch.drop_column("campaign_id")
    with op.batch_alter_table("operations") as batch:
        batch.drop_column("bonus")
        batch.drop_column("campaign_id")
