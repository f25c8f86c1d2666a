"""operations: an index on (partner_id, created_at, seq), where a partner's operations from a
date start: with a million operations and no end date, PostgreSQL otherwise walked the feed
from the partner's first operation (issue 15; docs/benchmarks.md)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 18:55:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_operations_partner_created", "operations", ["partner_id", "created_at", "seq"])


def downgrade() -> None:
    op.drop_index("ix_operations_partner_created", table_name="operations")
