"""attempts.parse_path and attempts.repairs (how each answer was read); an index for the sweep's lease question

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("attempts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("parse_path", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("repairs", sa.JSON(), nullable=True))
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.create_index("ix_tickets_status_lease_until", ["status", "lease_until"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.drop_index("ix_tickets_status_lease_until")
    with op.batch_alter_table("attempts", schema=None) as batch_op:
        batch_op.drop_column("repairs")
        batch_op.drop_column("parse_path")
