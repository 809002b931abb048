"""batched extraction: a batch_calls table (one raw output per batch call), attempts point to it

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 13:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import triage.store.models

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_DATETIME = triage.store.models.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "batch_calls",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(length=64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("raw_output", sa.Text(), nullable=True),
        sa.Column("finish_reason", sa.String(length=32), nullable=True),
        sa.Column("prompt_tokens", sa.Integer(), nullable=True),
        sa.Column("completion_tokens", sa.Integer(), nullable=True),
        sa.Column("reasoning_tokens", sa.Integer(), nullable=True),
        sa.Column("latency_ms", sa.Integer(), nullable=True),
        sa.Column("max_completion_tokens", sa.Integer(), nullable=True),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_batch_calls")),
    )
    with op.batch_alter_table("attempts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("batch_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("batch_size", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_attempts_batch_id"), ["batch_id"], unique=False)
        batch_op.create_foreign_key(batch_op.f("fk_attempts_batch_id_batch_calls"), "batch_calls",
                                    ["batch_id"], ["id"])


def downgrade() -> None:
    with op.batch_alter_table("attempts", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_attempts_batch_id_batch_calls"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_attempts_batch_id"))
        batch_op.drop_column("batch_size")
        batch_op.drop_column("batch_id")

    op.drop_table("batch_calls")
