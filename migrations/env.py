"""Alembic environment: the URL comes from the config `triage` builds (see triage.store.db)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

import triage.ratelimit.db_backend  # noqa: F401  (registers the rate_limit_state table on Base)
from triage.store.db import make_engine
from triage.store.models import Base

config = context.config
target_metadata = Base.metadata


def _configure(connection: Connection | None = None) -> None:
    is_sqlite = (connection.dialect.name if connection is not None else "") == "sqlite"
    context.configure(
        connection=connection,
        url=None if connection is not None else config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        render_as_batch=is_sqlite,  # SQLite alters tables by copying them
        compare_type=True,
    )


def run_migrations_offline() -> None:
    _configure()
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = make_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as connection:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
