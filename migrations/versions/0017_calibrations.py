"""calibrations of the confidence as data (versions and their heads); the signals each ticket was decided on

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-08 03:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import triage.store.models

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_DATETIME = triage.store.models.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "calibrations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("decisions", sa.Integer(), nullable=False),
        sa.Column("sources", sa.JSON(), nullable=False),
        sa.Column("reviews_through", sa.Integer(), nullable=False),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.Column("library", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calibrations")),
    )
    op.create_table(
        "calibration_heads",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("calibration_id", sa.Integer(), nullable=False),
        sa.Column("field", sa.String(length=64), nullable=False),
        sa.Column("extractor_group", sa.String(length=16), nullable=False),
        sa.Column("intercept", sa.Float(), nullable=False),
        sa.Column("weights", sa.JSON(), nullable=False),
        sa.Column("labels", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["calibration_id"], ["calibrations.id"],
                                name=op.f("fk_calibration_heads_calibration_id_calibrations"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calibration_heads")),
        sa.UniqueConstraint("calibration_id", "field", "extractor_group",
                            name=op.f("uq_calibration_heads_calibration_id_field_extractor_group")),
    )
    with op.batch_alter_table("calibration_heads", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_calibration_heads_calibration_id"), ["calibration_id"], unique=False)
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("confidence_signals", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.drop_column("confidence_signals")
    with op.batch_alter_table("calibration_heads", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_calibration_heads_calibration_id"))
    op.drop_table("calibration_heads")
    op.drop_table("calibrations")
