"""initial tables

Revision ID: 0001
Revises:
Create Date: 2026-11-25 22:43:52.937114
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import triage.store.models

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "conversations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("external_id", sa.String(length=255), nullable=False),
        sa.Column("customer", sa.JSON(), nullable=True),
        sa.Column("messages", sa.JSON(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("raw_payload", sa.JSON(), nullable=True),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("received_at", triage.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conversations")),
        sa.UniqueConstraint("source", "external_id", name=op.f("uq_conversations_source_external_id")),
    )
    op.create_table(
        "tickets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("conversation_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("fields", sa.JSON(), nullable=True),
        sa.Column("problem_type", sa.String(length=64), nullable=True),
        sa.Column("urgent_level", sa.String(length=32), nullable=True),
        sa.Column("route", sa.String(length=64), nullable=True),
        sa.Column("priority", sa.String(length=16), nullable=True),
        sa.Column("sla_due_at", triage.store.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("extractor", sa.String(length=16), nullable=True),
        sa.Column("model", sa.String(length=64), nullable=True),
        sa.Column("schema_version", sa.String(length=32), nullable=True),
        sa.Column("prompt_version", sa.String(length=32), nullable=True),
        sa.Column("fallback_reason", sa.String(length=64), nullable=True),
        sa.Column("fallback_detail", sa.Text(), nullable=True),
        sa.Column("fallback_raw_output", sa.Text(), nullable=True),
        sa.Column("run", sa.Integer(), nullable=False),
        sa.Column("lease_token", sa.String(length=36), nullable=True),
        sa.Column("lease_until", triage.store.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("next_attempt_at", triage.store.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("requeue_count", sa.Integer(), nullable=False),
        sa.Column("created_at", triage.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", triage.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", triage.store.models.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["conversation_id"], ["conversations.id"], name=op.f("fk_tickets_conversation_id_conversations")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tickets")),
        sa.UniqueConstraint("conversation_id", name=op.f("uq_tickets_conversation_id")),
    )
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_tickets_problem_type"), ["problem_type"], unique=False)
        batch_op.create_index(batch_op.f("ix_tickets_route"), ["route"], unique=False)
        batch_op.create_index("ix_tickets_status_updated_at", ["status", "updated_at"], unique=False)

    op.create_table(
        "attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("run", sa.Integer(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(length=64), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("raw_output", sa.Text(), nullable=True),
        sa.Column("finish_reason", sa.String(length=32), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("prompt_tokens", sa.Integer(), nullable=True),
        sa.Column("completion_tokens", sa.Integer(), nullable=True),
        sa.Column("reasoning_tokens", sa.Integer(), nullable=True),
        sa.Column("latency_ms", sa.Integer(), nullable=True),
        sa.Column("max_completion_tokens", sa.Integer(), nullable=True),
        sa.Column("created_at", triage.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"], name=op.f("fk_attempts_ticket_id_tickets")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_attempts")),
    )
    with op.batch_alter_table("attempts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_attempts_ticket_id"), ["ticket_id"], unique=False)

    op.create_table(
        "events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=True),
        sa.Column("created_at", triage.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"], name=op.f("fk_events_ticket_id_tickets")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_events_ticket_id"), ["ticket_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_events_ticket_id"))

    op.drop_table("events")
    with op.batch_alter_table("attempts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_attempts_ticket_id"))

    op.drop_table("attempts")
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.drop_index("ix_tickets_status_updated_at")
        batch_op.drop_index(batch_op.f("ix_tickets_route"))
        batch_op.drop_index(batch_op.f("ix_tickets_problem_type"))

    op.drop_table("tickets")
    op.drop_table("conversations")
