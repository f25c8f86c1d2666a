"""operations: indexes for reading a member's activity and a partner's operations newest or
oldest first, in acceptance order (seq), with a million operations in the index

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 15:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_operations_partner_seq", "operations", ["partner_id", "seq", "created_at"])
    op.create_index("ix_operations_member_seq", "operations", ["member_id", "seq"])


def downgrade() -> None:
    op.drop_index("ix_operations_member_seq", table_name="operations")
    op.drop_index("ix_operations_partner_seq", table_name="operations")
