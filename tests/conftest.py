"""Shared fixtures: real Redis and PostgreSQL, each isolated per test session.

Without the servers these tests skip with a reason; with ``TRIAGE_REQUIRE_SERVICES=1`` (as in
CI) they fail instead. Redis tests use their own DB number and flush it; PostgreSQL tests use
a database created for this session and dropped afterwards.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from kombu import Connection
from sqlalchemy import create_engine

from tests.factories import Service, serve
from tests.harness import fresh_database

REPO = Path(__file__).resolve().parent.parent
REQUIRE_SERVICES = os.environ.get("TRIAGE_REQUIRE_SERVICES") == "1"
REDIS_URL = os.environ.get("TRIAGE_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
AMQP_URL = os.environ.get("TRIAGE_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
POSTGRES_ADMIN_URL = os.environ.get("TRIAGE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _unavailable(service: str, error: Exception) -> None:
    message = f"{service} is not reachable ({error})"
    if REQUIRE_SERVICES:
        pytest.fail(f"{message}; TRIAGE_REQUIRE_SERVICES=1 makes this a failure", pytrace=False)
    pytest.skip(f"{message}; start it to run this test")


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis database number of our own, flushed before and after."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        _unavailable("Redis", exc)
    client.flushdb()
    yield REDIS_URL
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


@pytest.fixture
def api(database_url: str) -> Iterator[Service]:
    """The HTTP service on SQLite and on PostgreSQL (see :func:`tests.factories.serve`)."""
    with serve(database_url) as service:
        yield service
