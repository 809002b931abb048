"""Engines, sessions and migrations for SQLite (embedded default) and PostgreSQL.

SQLite runs in WAL mode and starts every transaction with ``BEGIN IMMEDIATE`` (the recipe
from SQLAlchemy's pysqlite notes), so worker threads queue for the write lock instead of
failing with "database is locked" half-way through a read-then-write transaction.

>>> engine = make_engine("sqlite://")
>>> engine.dialect.name
'sqlite'
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import CursorResult, Engine, Executable, Table, create_engine, event, inspect
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from triage.errors import DatabaseNotReadyError
from triage.resources import MIGRATIONS_DIR

SQLITE_BUSY_TIMEOUT_MS = 30_000


def _json_dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def sqlite_file(url: str) -> Path | None:
    """The file behind a ``sqlite:///path`` URL, or ``None`` (memory or another backend)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def _prepare_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str) -> Engine:
    """An engine for ``url``; a SQLite file's folder is created when missing."""
    path = sqlite_file(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    is_sqlite = make_url(url).get_backend_name() == "sqlite"
    engine = create_engine(
        url,
        json_serializer=_json_dumps,
        pool_pre_ping=not is_sqlite,
        connect_args={"check_same_thread": False} if is_sqlite else {},
    )
    if is_sqlite:
        _prepare_sqlite(engine)
    return engine


def insert_if_absent(dialect: str, table: Table, unique_column: str, /, **values: Any) -> Executable:
    """``INSERT ... ON CONFLICT (unique_column) DO NOTHING`` for SQLite or PostgreSQL: a row the first time only."""
    insert = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
    return insert.values(**values).on_conflict_do_nothing(index_elements=[unique_column])


def changed_rows(result: object) -> int:
    """How many rows an UPDATE or DELETE changed."""
    assert isinstance(result, CursorResult), "rowcount exists only on the result of a DML statement"
    return result.rowcount


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(url: str) -> Config:
    """Alembic's config for ``url``, without an ini file (``migrations/`` is the script folder)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Apply the migrations up to ``revision``."""
    path = sqlite_file(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(url), revision)


def ensure_migrated(engine: Engine) -> None:
    """Raise :class:`DatabaseNotReadyError` with the command to run when tables are missing."""
    if not inspect(engine).has_table("tickets"):
        raise DatabaseNotReadyError(
            f"the database {engine.url.render_as_string(hide_password=True)} has no tables: "
            "run `triage db upgrade` first"
        )
