"""operations: an index on (partner_id, status, seq), for a partner's feed filtered by status:
with a million operations PostgreSQL found the 2% rejected by walking the partner's feed in seq
order (56 ms p99 on the project's machine; issue 15, docs/benchmarks.md)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 23:25:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_operations_partner_status", "operations", ["partner_id", "status", "seq"])


def downgrade() -> None:
    op.drop_index("ix_operations_partner_status", table_name="operations")
