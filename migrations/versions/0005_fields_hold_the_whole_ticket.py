"""the ticket's fields live only in its JSON: backfill and drop the problem_type/urgent_level columns; resolved_at

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import triage.store.models

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The columns the first schema's routing fields had; their values move into ``fields``.
OLD_COLUMNS = ("problem_type", "urgent_level")

_tickets = sa.table("tickets", sa.column("id", sa.Integer), sa.column("fields", sa.JSON),
                    *(sa.column(name, sa.String) for name in OLD_COLUMNS))


def upgrade() -> None:
    bind = op.get_bind()
    rows = bind.execute(sa.select(_tickets.c.id, _tickets.c.fields, *(_tickets.c[n] for n in OLD_COLUMNS))).all()
    for row in rows:
        old = {name: getattr(row, name) for name in OLD_COLUMNS if getattr(row, name) is not None}
        merged = {**old, **(row.fields or {})}  # the stored ticket wins where both hold a value
        if old and merged != row.fields:
            bind.execute(sa.update(_tickets).where(_tickets.c.id == row.id).values(fields=merged))
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tickets_problem_type"))
        batch_op.drop_column("urgent_level")
        batch_op.drop_column("problem_type")
        batch_op.add_column(sa.Column("resolved_at", triage.store.models.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.drop_column("resolved_at")
        batch_op.add_column(sa.Column("problem_type", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("urgent_level", sa.String(length=32), nullable=True))
        batch_op.create_index(batch_op.f("ix_tickets_problem_type"), ["problem_type"], unique=False)
    bind = op.get_bind()
    for row in bind.execute(sa.select(_tickets.c.id, _tickets.c.fields)).all():
        values = {name: str(row.fields[name]) for name in OLD_COLUMNS if (row.fields or {}).get(name) is not None}
        if values:
            bind.execute(sa.update(_tickets).where(_tickets.c.id == row.id).values(**values))
