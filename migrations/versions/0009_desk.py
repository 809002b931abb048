"""The dispatch desk: tickets.sla_started_at (the SLA counts from the customer's first message) and
tickets.search_text (case-folded conversation and fields, trigram-indexed on PostgreSQL)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from triage.store.models import SEARCH_INDEX, UTCDateTime
from triage.store.search import search_text

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 500


def _backfill_search_text() -> None:
    """Fill search_text for the tickets already stored, a batch at a time."""
    bind = op.get_bind()
    tickets = sa.table("tickets", sa.column("id", sa.Integer), sa.column("conversation_id", sa.Integer),
                       sa.column("fields", sa.JSON), sa.column("search_text", sa.Text))
    conversations = sa.table("conversations", sa.column("id", sa.Integer), sa.column("external_id", sa.String),
                             sa.column("messages", sa.JSON))
    last = 0
    while True:
        rows = bind.execute(
            sa.select(tickets.c.id, tickets.c.fields, conversations.c.external_id, conversations.c.messages)
            .join(conversations, conversations.c.id == tickets.c.conversation_id)
            .where(tickets.c.id > last).order_by(tickets.c.id).limit(BATCH)).all()
        if not rows:
            return
        for row in rows:
            bind.execute(tickets.update().where(tickets.c.id == row.id).values(
                search_text=search_text(row.external_id, row.messages or [], row.fields)))
        last = rows[-1].id


def upgrade() -> None:
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sla_started_at", UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("search_text", sa.Text(), server_default="", nullable=False))
    op.execute("UPDATE tickets SET sla_started_at = (SELECT received_at FROM conversations "
               "WHERE conversations.id = tickets.conversation_id)")
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.alter_column("sla_started_at", existing_type=UTCDateTime(), nullable=False)
    _backfill_search_text()
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        op.create_index(SEARCH_INDEX, "tickets", ["search_text"], postgresql_using="gin",
                        postgresql_ops={"search_text": "gin_trgm_ops"})


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index(SEARCH_INDEX, table_name="tickets")
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.drop_column("search_text")
        batch_op.drop_column("sla_started_at")
