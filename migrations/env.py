"""Alembic environment: the URL comes from the config `triage db` builds (see triage.store.db), or,
under plain ``alembic`` (alembic.ini), from the settings' TRIAGE_DATABASE_URL."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

import triage.confidence.store
import triage.evaluation.cache
import triage.learning.store
import triage.ratelimit.db_backend
import triage.store.purge  # noqa: F401  (registers the purges, learned model, calibration and answer cache tables on Base)
from triage.settings import load_settings
from triage.store.db import make_engine
from triage.store.models import POSTGRESQL_ONLY_INDEXES, Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    return config.get_main_option("sqlalchemy.url") or load_settings().database_url


def _configure(connection: Connection | None = None) -> None:
    is_sqlite = (connection.dialect.name if connection is not None else "") == "sqlite"

    def include_object(item: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
        """Leave the PostgreSQL-only indexes (pg_trgm) out of the comparison on other databases."""
        return not (is_sqlite and type_ == "index" and name in POSTGRESQL_ONLY_INDEXES)

    context.configure(
        connection=connection,
        url=None if connection is not None else _url(),
        target_metadata=target_metadata,
        render_as_batch=is_sqlite,  # SQLite alters tables by copying them
        compare_type=True,
        include_object=include_object,
    )


def run_migrations_offline() -> None:
    _configure()
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = make_engine(_url())
    with engine.connect() as connection:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
