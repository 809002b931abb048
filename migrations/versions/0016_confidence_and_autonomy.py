"""confidence per routing field and per ticket, on tickets and attempts; the autonomy level applied

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-08 03:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("confidence", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("field_confidence", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("autonomy", sa.String(length=16), nullable=True))
    with op.batch_alter_table("attempts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("confidence", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("field_confidence", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("attempts", schema=None) as batch_op:
        batch_op.drop_column("field_confidence")
        batch_op.drop_column("confidence")
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.drop_column("autonomy")
        batch_op.drop_column("field_confidence")
        batch_op.drop_column("confidence")
