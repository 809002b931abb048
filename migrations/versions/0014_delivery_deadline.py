"""delivery deadline: when a delivery was last retried by hand, and how many attempts met a transient answer

Transient answers (429, 5xx, timeouts) are retried until writeback.give_up_after_hours after the
delivery's creation or its last `triage deliveries --retry` (retried_at); writeback.max_attempts caps
only the other attempts (attempts - transient_attempts).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-08 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import triage.store.models

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_DATETIME = triage.store.models.UTCDateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("transient_attempts", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("retried_at", UTC_DATETIME, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_column("retried_at")
        batch_op.drop_column("transient_attempts")
