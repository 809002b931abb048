"""What ``triage worker``, ``beat`` and ``serve`` check before they take any work.

In order: the settings (:func:`~triage.settings.load_settings`); the schema file, the routing rules
against it, the listings' fields and the database and broker URLs (:meth:`triage.app.App.build`,
which calls :func:`check_urls`: no I/O); then :func:`check_services`: the database answers and is
at the latest migration (:func:`~triage.store.db.ensure_migrated`) and the broker answers. Each
failure is one :class:`~triage.errors.ConfigError` or :class:`~triage.errors.DatabaseNotReadyError`
naming the key or URL (passwords hidden) and what to do; ``triage.cli.main`` prints it as one line
and exits with status 2.

>>> check_database_url("postgres://triage:secret@db/triage")
Traceback (most recent call last):
...
triage.settings.SettingsError: TRIAGE_DATABASE_URL='postgres://triage:***@db/triage': SQLAlchemy has no database \
'postgres'; for PostgreSQL write postgresql+psycopg://user:password@host:5432/name
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kombu import Connection
from kombu.utils.url import maybe_sanitize_url
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from triage.errors import ConfigError
from triage.settings import Settings, SettingsError
from triage.store.db import ensure_migrated

if TYPE_CHECKING:
    from triage.app import App

#: Seconds one broker check waits for an answer.
BROKER_TIMEOUT_SECONDS = 3
POSTGRESQL_HINT = "for PostgreSQL write postgresql+psycopg://user:password@host:5432/name"


class BrokerUnreachableError(ConfigError):
    """The broker at ``TRIAGE_BROKER_URL`` does not answer."""


def _database_url_problem(url: str) -> str | None:
    try:
        parsed = make_url(url)
    except ArgumentError:
        return f"not a database URL; e.g. sqlite:///var/triage.sqlite3, or {POSTGRESQL_HINT}"
    try:
        dialect = parsed.get_dialect()
    except NoSuchModuleError:
        hint = POSTGRESQL_HINT if parsed.drivername.startswith("postgres") else "see SQLAlchemy's list of dialects"
        return f"SQLAlchemy has no database {parsed.drivername!r}; {hint}"
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        return f"the driver for {parsed.drivername!r} is not installed ({exc}); {POSTGRESQL_HINT}"
    return None


def _broker_url_problem(url: str) -> str | None:
    try:
        Connection(url).get_transport_cls()
    except KeyError as exc:
        return f"{exc.args[0]}; use redis://host:6379/0, amqp://user:password@host:5672/vhost or sqla+sqlite:///file"
    except ImportError as exc:
        return f"the transport's library is not installed ({exc})"
    return None


def shown_database_url(url: str) -> str:
    """``url`` with its password hidden (a URL that does not parse is shown only without an ``@``)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url if "@" not in url else "<unparsable URL>"


def shown_broker_url(url: str) -> str:
    """``url`` with its password hidden."""
    return maybe_sanitize_url(url) if "@" in url else url


def check_database_url(url: str) -> None:
    """Refuse a database URL nothing installed can use, naming the variable (no connection is made)."""
    problem = _database_url_problem(url)
    if problem:
        raise SettingsError(f"TRIAGE_DATABASE_URL={shown_database_url(url)!r}: {problem}")


def check_broker_url(url: str) -> None:
    """Refuse a broker URL no installed transport takes, naming the variable (no connection is made)."""
    problem = _broker_url_problem(url)
    if problem:
        raise SettingsError(f"TRIAGE_BROKER_URL={shown_broker_url(url)!r}: {problem}")


def check_urls(settings: Settings) -> None:
    """The settings' database and broker URLs name something installed."""
    check_database_url(settings.database_url)
    check_broker_url(settings.broker_url)


def broker_problem(url: str) -> str | None:
    """Why the broker at ``url`` does not answer, or ``None`` when it does."""
    try:
        with Connection(url, connect_timeout=BROKER_TIMEOUT_SECONDS) as connection:
            connection.ensure_connection(max_retries=1, timeout=BROKER_TIMEOUT_SECONDS)
    except Exception as exc:  # any failure means "down"; the reason goes in the answer
        return f"{type(exc).__name__}: {exc}"
    return None


def check_services(app: App) -> None:
    """The database answers and is at the latest migration; the broker answers."""
    ensure_migrated(app.engine)
    problem = broker_problem(app.settings.broker_url)
    if problem:
        raise BrokerUnreachableError(f"TRIAGE_BROKER_URL={shown_broker_url(app.settings.broker_url)!r}: the broker "
                                     f"does not answer ({problem}); start it, or point the variable at one that runs")
