"""A running triage stack for integration tests: real worker processes, real broker, real database.

``Stack`` runs the ``triage`` command as subprocesses with an environment of its own (the
repository's config plus fast retry settings), so what is tested is what a user runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from benchmarks import stack
from benchmarks.stack import clean_environ
from tests.factories import CONFIG_PATH, REPO
from triage.cli.processes import stop_gracefully
from triage.states.tickets import FINISHED
from triage.store.db import make_engine, make_sessionmaker, upgrade
from triage.store.queries import TicketFilter, TicketView, list_tickets

STOP_GRACE_SECONDS = 20
FAST_SETTINGS = {
    "TRIAGE__RETRY__BACKOFF_BASE_SECONDS": "0.05",
    "TRIAGE__RETRY__BACKOFF_MAX_SECONDS": "0.5",
    "TRIAGE__RETRY__MAX_RETRIES": "3",
    "TRIAGE__EXTRACTION__TIMEOUT_SECONDS": "5",
}


def fresh_database(server: str) -> AbstractContextManager[str]:
    """A PostgreSQL database ``triage_test_<hex>`` created on ``server`` (an admin URL), dropped on exit; yields
    its URL."""
    return stack.fresh_database(server, "triage_test")


#: How long :func:`until_lock_waiters` waits for a statement to queue on a lock.
LOCK_WAIT_SECONDS = 20


def lock_waiters(url: str) -> int:
    """How many sessions of ``url``'s PostgreSQL database wait for a lock (a row's, say) right now."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return int(connection.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'")).scalar_one())
    finally:
        engine.dispose()


def until_lock_waiters(url: str, count: int) -> None:
    """Return once ``count`` sessions of ``url``'s database wait for a lock (at most :data:`LOCK_WAIT_SECONDS`)."""
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    while lock_waiters(url) < count:
        assert time.monotonic() < deadline, f"{count} statements never queued on a lock"
        time.sleep(0.02)


class Stack:
    def __init__(self, database_url: str, broker_url: str, api_base_url: str | None,
                 extra_env: dict[str, str] | None = None) -> None:
        self.database_url = database_url
        self.env = {**clean_environ(), "TRIAGE_CONFIG": str(CONFIG_PATH),
                    "TRIAGE_DATABASE_URL": database_url, "TRIAGE_BROKER_URL": broker_url,
                    **FAST_SETTINGS, **(extra_env or {})}
        if api_base_url is not None:
            self.env |= {"MIMO_API_KEY": "sk-test", "MIMO_BASE_URL": api_base_url}
        self.engine = make_engine(database_url)
        self.sessions: sessionmaker[Session] = make_sessionmaker(self.engine)
        self.logs: dict[str, str] = {}

    def migrate(self) -> None:
        upgrade(self.database_url)

    def cli(self, *args: str, stdin: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run ``triage ARGS`` and return the finished process (never raises on exit status)."""
        return subprocess.run([sys.executable, "-m", "triage", *args], input=stdin, env=self.env, cwd=REPO,
                              capture_output=True, text=True, timeout=timeout, check=False)

    def submit(self, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        result = self.cli("submit", "-", stdin="".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        assert result.returncode == 0, result.stderr
        return [json.loads(line) for line in result.stdout.splitlines()]

    @contextmanager
    def process(self, *args: str, name: str | None = None) -> Iterator[subprocess.Popen[str]]:
        """``triage ARGS`` running in the background, stopped (SIGTERM) on exit; its log in
        ``self.logs[name]`` (``name`` defaults to the subcommand: give two of a kind their own)."""
        name = name or args[0]
        log = open(Path(self.env.get("TMPDIR", "/tmp")) / f"triage-{name}-{os.getpid()}.log", "w+")  # noqa: SIM115
        process = subprocess.Popen([sys.executable, "-m", "triage", *args], env=self.env, cwd=REPO, stdout=log,
                                   stderr=subprocess.STDOUT, text=True)
        try:
            yield process
        finally:
            stop_gracefully(process, STOP_GRACE_SECONDS)
            log.seek(0)
            self.logs[name] = log.read()
            log.close()

    def worker(self, *args: str) -> AbstractContextManager[subprocess.Popen[str]]:
        return self.process("worker", "--loglevel", "INFO", *args)

    @contextmanager
    def server(self, port: int, loglevel: str = "WARNING") -> Iterator[str]:
        """``triage serve`` on ``port``; yields its base URL once /healthz answers 200."""
        base = f"http://127.0.0.1:{port}"
        with self.process("serve", "--port", str(port), "--loglevel", loglevel) as process:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("triage serve did not become healthy")
                time.sleep(0.2)
            yield base

    def tickets(self, ids: Sequence[int] | None = None) -> list[TicketView]:
        return list_tickets(self.sessions, TicketFilter(ids=ids)).items

    def wait_finished(self, ids: Sequence[int], timeout: float = 90) -> dict[int, TicketView]:
        deadline = time.monotonic() + timeout
        while True:
            views = {v.id: v for v in self.tickets(ids)}
            if all(v.status in FINISHED for v in views.values()) and len(views) == len(ids):
                return views
            if time.monotonic() > deadline:
                pending = {v.id: v.status for v in views.values() if v.status not in FINISHED}
                raise AssertionError(f"tickets still unfinished after {timeout}s: {pending}")
            time.sleep(0.2)

    def close(self) -> None:
        self.engine.dispose()
