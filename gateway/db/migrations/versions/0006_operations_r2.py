"""operations and receipts (r2): the member's address an operation was signed for (a member may
migrate to a new address later), a redemption's place in its batch's commitment (what a refund
proves), and a reversal's debt

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("operations") as batch:
        batch.add_column(sa.Column("member_address", sa.String(42), nullable=True))
        batch.add_column(sa.Column("commit_index", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("debt", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("receipts") as batch:
        batch.add_column(sa.Column("member_address", sa.String(42), nullable=True))
    # No member could migrate before this revision: every operation so far was signed for the
    # address its member still has.
    for table in ("operations", "receipts"):
        op.execute(
            f"UPDATE {table} SET member_address = "
            f"(SELECT members.address FROM members WHERE members.member_id = {table}.member_id)"
        )


def downgrade() -> None:
    with op.batch_alter_table("receipts") as batch:
        batch.drop_column("member_address")
    with op.batch_alter_table("operations") as batch:
        batch.drop_column("debt")
        batch.drop_column("commit_index")
        batch.drop_column("member_address")
