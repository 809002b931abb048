"""purge log: one row per retention purge, with what it deleted counted

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 09:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import triage.store.models

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "purges",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("before", triage.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("started_at", triage.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", triage.store.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("conversations", sa.Integer(), nullable=False),
        sa.Column("tickets", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("intake_keys", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_purges")),
    )


def downgrade() -> None:
    op.drop_table("purges")
