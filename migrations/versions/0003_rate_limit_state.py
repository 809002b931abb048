"""rate limit state

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 23:12:12.821355
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rate_limit_state",
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("blocked_until_us", sa.BigInteger(), nullable=False),
        sa.Column("grants", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_rate_limit_state")),
    )


def downgrade() -> None:
    op.drop_table("rate_limit_state")
