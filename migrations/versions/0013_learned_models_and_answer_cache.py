"""learned extractor and evaluation: model versions as data, the training set, the LLM answer cache, reviews by kind

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-08 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import triage.store.models

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_DATETIME = triage.store.models.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "learned_models",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("schema_version", sa.String(length=32), nullable=True),
        sa.Column("training_size", sa.Integer(), nullable=False),
        sa.Column("sources", sa.JSON(), nullable=False),
        sa.Column("reviews_through", sa.Integer(), nullable=False),
        sa.Column("folds", sa.Integer(), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("library", sa.JSON(), nullable=False),
        sa.Column("featurizer", sa.JSON(), nullable=False),
        sa.Column("idf", sa.LargeBinary(), nullable=False),
        sa.Column("training_hashes", sa.LargeBinary(), nullable=False),
        sa.Column("notes", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_learned_models")),
    )
    op.create_table(
        "learned_model_fields",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("field", sa.String(length=64), nullable=False),
        sa.Column("classes", sa.JSON(), nullable=False),
        sa.Column("coef", sa.LargeBinary(), nullable=False),
        sa.Column("coef_rows", sa.Integer(), nullable=False),
        sa.Column("intercept", sa.LargeBinary(), nullable=False),
        sa.Column("beta", sa.Float(), nullable=False),
        sa.Column("training_size", sa.Integer(), nullable=False),
        sa.Column("accuracy", sa.Float(), nullable=True),
        sa.Column("macro_f1", sa.Float(), nullable=True),
        sa.Column("ece", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["model_id"], ["learned_models.id"],
                                name=op.f("fk_learned_model_fields_model_id_learned_models"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_learned_model_fields")),
        sa.UniqueConstraint("model_id", "field", name=op.f("uq_learned_model_fields_model_id_field")),
    )
    with op.batch_alter_table("learned_model_fields", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_learned_model_fields_model_id"), ["model_id"], unique=False)
    op.create_table(
        "training_examples",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=255), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_training_examples")),
    )
    op.create_table(
        "evaluation_answers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("conversation_hash", sa.String(length=64), nullable=False),
        sa.Column("schema_version", sa.String(length=32), nullable=False),
        sa.Column("prompt_version", sa.String(length=32), nullable=False),
        sa.Column("model", sa.String(length=64), nullable=False),
        sa.Column("answered_by", sa.String(length=64), nullable=True),
        sa.Column("ticket", sa.JSON(), nullable=True),
        sa.Column("failure_reason", sa.String(length=64), nullable=True),
        sa.Column("failure_detail", sa.Text(), nullable=True),
        sa.Column("usage", sa.JSON(), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evaluation_answers")),
        sa.UniqueConstraint("conversation_hash", "schema_version", "prompt_version", "model",
                            name="uq_evaluation_answers_key"),
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index("ix_events_kind_id", ["kind", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_kind_id")
    op.drop_table("evaluation_answers")
    op.drop_table("training_examples")
    with op.batch_alter_table("learned_model_fields", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_learned_model_fields_model_id"))
    op.drop_table("learned_model_fields")
    op.drop_table("learned_models")
