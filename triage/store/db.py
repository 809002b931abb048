"""Engines, sessions and migrations for SQLite (embedded default) and PostgreSQL.

SQLite runs in WAL mode and starts every transaction with ``BEGIN IMMEDIATE`` (the recipe
from SQLAlchemy's pysqlite notes), so worker threads queue for the write lock instead of
failing with "database is locked" half-way through a read-then-write transaction.

No connection is pinged when the pool hands it out (``pool_pre_ping`` would cost a round trip
per transaction): a connection that turns out dead (the server restarted) makes SQLAlchemy
throw the whole pool's connections away, and the hot path's transactions run once more on a
fresh one (:func:`retry_disconnect`); anything else meets the error once, as it would a server
that is down.

>>> engine = make_engine("sqlite://")
>>> engine.dialect.name
'sqlite'
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import CursorResult, Engine, Executable, Table, create_engine, event, inspect
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from triage.errors import DatabaseNotReadyError
from triage.resources import MIGRATIONS_DIR
from triage.settings import DatabasePoolSettings

SQLITE_BUSY_TIMEOUT_MS = 30_000

P = ParamSpec("P")
T = TypeVar("T")


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


def make_engine(url: str, pool: DatabasePoolSettings | None = None) -> Engine:
    """An engine for ``url`` with ``pool``'s connection pool (a server database's; SQLite keeps its own); a
    SQLite file's folder is created when missing."""
    path = sqlite_file(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    is_sqlite = make_url(url).get_backend_name() == "sqlite"
    pooling = {} if is_sqlite or pool is None else {"pool_size": pool.size, "max_overflow": pool.max_overflow}
    engine = create_engine(
        url,
        json_serializer=_json_dumps,
        connect_args={"check_same_thread": False} if is_sqlite else {},
        **pooling,
    )
    if is_sqlite:
        _prepare_sqlite(engine)
    return engine


def retry_disconnect(transaction: Callable[P, T]) -> Callable[P, T]:
    """Run ``transaction`` (a function that opens and commits its own transaction) once more when the database
    connection turned out dead: SQLAlchemy has then invalidated the pool, so the second run gets a new
    connection. A commit whose answer was lost may run twice: the hot path's writes are conditional on the
    lease (or idempotent), so the second run finds the work done and changes nothing."""
    @functools.wraps(transaction)
    def run(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return transaction(*args, **kwargs)
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
            return transaction(*args, **kwargs)
    return run


def insert_if_absent(dialect: str, table: Table, unique_column: str, /, **values: Any) -> Executable:
    """``INSERT ... ON CONFLICT (unique_column) DO NOTHING`` for SQLite or PostgreSQL: a row the first time only."""
    return insert_ignoring_conflicts(dialect, table, [unique_column]).values(**values)


def insert_ignoring_conflicts(dialect: str, table: Table,
                              unique_columns: Sequence[str]) -> postgresql.Insert | sqlite.Insert:
    """``INSERT ... ON CONFLICT (unique_columns) DO NOTHING`` for SQLite or PostgreSQL. Executed with a list of
    rows (and a ``RETURNING`` to learn which went in), SQLAlchemy sends them as multi-row statements of one
    compiled, cached form ("insertmanyvalues")."""
    insert = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
    return insert.on_conflict_do_nothing(index_elements=list(unique_columns))


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


@cache
def script_heads() -> frozenset[str]:
    """The latest migration(s) of this release."""
    return frozenset(ScriptDirectory(str(MIGRATIONS_DIR)).get_heads())


def _known(revision: str) -> bool:
    try:
        return ScriptDirectory(str(MIGRATIONS_DIR)).get_revision(revision) is not None
    except CommandError:
        return False


def ensure_migrated(engine: Engine) -> None:
    """Raise :class:`DatabaseNotReadyError`, naming the database and what to do, when it does not answer, has
    no tables, or is not at this release's latest migration."""
    where = engine.url.render_as_string(hide_password=True)
    try:
        with engine.connect() as connection:
            current = frozenset(MigrationContext.configure(connection).get_current_heads())
            has_tables = inspect(connection).has_table("tickets")
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else type(exc).__name__
        raise DatabaseNotReadyError(f"cannot reach the database {where} ({reason}): check TRIAGE_DATABASE_URL "
                                    "and that the server is up") from None
    if not has_tables:
        raise DatabaseNotReadyError(f"the database {where} has no tables: run `triage db upgrade` first")
    if current == script_heads():
        return
    at = ", ".join(sorted(current)) or "none"
    unknown = sorted(revision for revision in current if not _known(revision))
    if unknown:
        raise DatabaseNotReadyError(
            f"the database {where} is at migration {at}, which this release of triage does not have (a newer "
            "release migrated it): run that release, or downgrade with it first (`triage db downgrade REVISION`)")
    raise DatabaseNotReadyError(f"the database {where} is at migration {at}, this release needs "
                                f"{', '.join(sorted(script_heads()))}: run `triage db upgrade`")
