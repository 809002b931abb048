"""de-duplication: each ticket's conversation key (indexed) and the ticket whose extraction it reused

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01 13:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("dedupe_key", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("dedupe_of", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_tickets_dedupe_key"), ["dedupe_key"], unique=False)
        batch_op.create_foreign_key(batch_op.f("fk_tickets_dedupe_of_tickets"), "tickets", ["dedupe_of"], ["id"],
                                    ondelete="SET NULL")


def downgrade() -> None:
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_tickets_dedupe_of_tickets"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_tickets_dedupe_key"))
        batch_op.drop_column("dedupe_of")
        batch_op.drop_column("dedupe_key")
