"""pin_failures: wrong PINs counted per member and partner (a partner locks only its own tills out)

Revision ID: 0004
Revises: 0003
Create Date: 2027-01-10 12:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "pin_failures",
        sa.Column("member_id", sa.String(64), sa.ForeignKey("members.member_id"), primary_key=True),
        sa.Column("partner_id", sa.Integer(), sa.ForeignKey("partners.id"), primary_key=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("locked", sa.Boolean(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("pin_failures")
