"""Shared fixtures: real Redis and PostgreSQL, each isolated per test session.

Without the servers these tests skip with a reason; with ``TRIAGE_REQUIRE_SERVICES=1`` (as in
CI) they fail instead. Redis tests use their own DB number and flush it; PostgreSQL tests use
a database created for this session and dropped afterwards.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
from kombu import Connection
from sqlalchemy import Engine, create_engine, text

from tests.factories import ManualClock, Service, build_app, serve
from tests.harness import fresh_database
from triage.app import App
from triage.store.db import upgrade

REPO = Path(__file__).resolve().parent.parent
REQUIRE_SERVICES = os.environ.get("TRIAGE_REQUIRE_SERVICES") == "1"
REDIS_URL = os.environ.get("TRIAGE_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
REDIS_DATABASES = 16  # Redis's default number of databases
AMQP_URL = os.environ.get("TRIAGE_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
POSTGRES_ADMIN_URL = os.environ.get("TRIAGE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _unavailable(service: str, error: Exception) -> None:
    message = f"{service} is not reachable ({error})"
    if REQUIRE_SERVICES:
        pytest.fail(f"{message}; TRIAGE_REQUIRE_SERVICES=1 makes this a failure", pytrace=False)
    pytest.skip(f"{message}; start it to run this test")


def redis_url_of_this_process() -> str:
    """``TRIAGE_TEST_REDIS_URL``'s database for a lone run; under pytest-xdist (``make test`` runs two
    processes) worker ``gwN`` takes the N-th database after it, so parallel workers never flush each other's."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    parts = urlsplit(REDIS_URL)
    number = (int(parts.path.strip("/") or 0) + int(worker.removeprefix("gw"))) % REDIS_DATABASES
    return urlunsplit(parts._replace(path=f"/{number}"))


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis database number of our own, flushed before and after."""
    url = redis_url_of_this_process()
    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        _unavailable("Redis", exc)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


@pytest.fixture(scope="session")
def amqp_url() -> Iterator[str]:
    """A RabbitMQ virtual host of our own (so parallel runs never share queues), deleted afterwards."""
    try:
        with Connection(AMQP_URL, connect_timeout=2) as connection:
            connection.ensure_connection(max_retries=1)
    except Exception as exc:  # any transport error means "not reachable" here
        _unavailable("RabbitMQ", exc)
    vhost = f"triage_test_{uuid.uuid4().hex[:10]}"
    rabbitmqctl = ["rabbitmqctl", "--quiet"]
    try:
        subprocess.run([*rabbitmqctl, "add_vhost", vhost], check=True, capture_output=True, timeout=60)
        subprocess.run([*rabbitmqctl, "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"], check=True,
                       capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        _unavailable("rabbitmqctl (to create a virtual host)", exc)
    yield Connection(AMQP_URL).clone(virtual_host=vhost).as_uri(include_password=True)
    subprocess.run([*rabbitmqctl, "delete_vhost", vhost], check=False, capture_output=True, timeout=60)


@pytest.fixture(scope="session")
def package_index(tmp_path_factory: pytest.TempPathFactory) -> None:
    """pip reaches its package index (PyPI, as configured): what installing a wheel needs."""
    probe = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--dest",
                            str(tmp_path_factory.mktemp("index-probe")), "pip"],
                           capture_output=True, text=True, timeout=120, check=False)
    if probe.returncode != 0:
        _unavailable("The package index", RuntimeError(probe.stderr.strip().splitlines()[-1:]))


@pytest.fixture(scope="session")
def postgres_server() -> str:
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect():
            pass
    except Exception as exc:  # any driver error means "not reachable" here
        _unavailable("PostgreSQL", exc)
    finally:
        admin.dispose()
    return POSTGRES_ADMIN_URL


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh PostgreSQL database, dropped after the test."""
    with fresh_database(postgres_server) as url:
        yield url


@pytest.fixture(scope="module")
def postgres_module_url(postgres_server: str) -> Iterator[str]:
    """A fresh PostgreSQL database shared by one test module."""
    with fresh_database(postgres_server) as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'triage.sqlite3'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Each test using this runs on SQLite and on PostgreSQL."""
    fixture = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    return request.getfixturevalue(fixture)


# ---- migrated databases, fast: migrate once per session, then copy (SQLite) or truncate (PostgreSQL) ----

@pytest.fixture(scope="session")
def _migrated_postgres(postgres_server: str) -> Iterator[tuple[str, Engine]]:
    """One PostgreSQL database migrated to head for the whole session, and an engine to empty it."""
    with fresh_database(postgres_server) as url:
        upgrade(url)
        engine = create_engine(url, isolation_level="AUTOCOMMIT")
        yield url, engine
        engine.dispose()


@pytest.fixture
def migrated_postgres_url(_migrated_postgres: tuple[str, Engine]) -> str:
    """The session's migrated PostgreSQL database with every table emptied and every id sequence reset."""
    url, engine = _migrated_postgres
    with engine.connect() as conn:
        tables = conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                                   "AND tablename != 'alembic_version'")).scalars().all()
        conn.execute(text("SET lock_timeout = '10s'"))
        conn.execute(text(f"TRUNCATE {', '.join(f'{t!r}'.replace(chr(39), chr(34)) for t in tables)} "
                          "RESTART IDENTITY CASCADE"))
    return url


@pytest.fixture(scope="session")
def _migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("migrated") / "triage.sqlite3"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture
def migrated_sqlite_url(_migrated_sqlite: Path, tmp_path: Path) -> str:
    """A copy of a SQLite database migrated to head."""
    target = tmp_path / "triage.sqlite3"
    shutil.copyfile(_migrated_sqlite, target)
    return f"sqlite:///{target}"


@pytest.fixture(params=["sqlite", "postgresql"])
def migrated_database_url(request: pytest.FixtureRequest) -> str:
    """An empty database at the latest migration, on SQLite and on PostgreSQL (for tests of the app, not
    of the migrations: those take ``database_url``)."""
    fixture = "migrated_sqlite_url" if request.param == "sqlite" else "migrated_postgres_url"
    return request.getfixturevalue(fixture)


@pytest.fixture
def api(migrated_database_url: str) -> Iterator[Service]:
    """The HTTP service on SQLite and on PostgreSQL (see :func:`tests.factories.serve`)."""
    with serve(migrated_database_url) as service:
        yield service


@pytest.fixture
def clock() -> ManualClock:
    """A clock the test moves by hand (``clock.advance(...)``)."""
    return ManualClock()


@pytest.fixture
def app(migrated_sqlite_url: str, clock: ManualClock) -> Iterator[App]:
    """An app on a migrated SQLite database and :func:`clock`; a test file may define its own."""
    built = build_app(migrated_sqlite_url, clock=clock)
    yield built
    built.close()
