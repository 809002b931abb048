"""triage driven from outside, in the production shape: PostgreSQL, Redis, ``triage`` CLI processes.

Everything goes through the command line (``triage db upgrade``, ``submit``, ``worker``, ``serve``)
and environment variables; results are read back with read-only SQL on ``tickets`` and
``attempts``. Settings a scenario asks for but the product does not know are dropped and reported
(``triage db upgrade`` names them), so the harness keeps working while the product changes.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import redis
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from triage.cli.processes import stop_gracefully

REPO = Path(__file__).resolve().parent.parent
STOP_GRACE_SECONDS = 30
READY_TIMEOUT_SECONDS = 90
POLL_SECONDS = 0.25
#: How often a starting process's log or health check is looked at (a backlog's clock starts then).
READY_POLL_SECONDS = 0.05
#: Celery's line once a worker consumes (``NAME@host ready.``, whatever the node name).
READY_LINE = re.compile(r"\S+@\S+ ready\.")
#: What ``triage`` prints when a setting is refused: ``triage: NAME=...: message``.
SETTINGS_REFUSED_STATUS = 2
API_KEY = "sk-bench"
HTTP_OK = 200


@dataclass(frozen=True)
class Services:
    """Where the benchmark's PostgreSQL and Redis are; databases ``triage_bench_*`` are made and dropped."""

    postgres_admin_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    triage_redis_url: str = "redis://127.0.0.1:6379/10"
    celery_redis_url: str = "redis://127.0.0.1:6379/11"


def flush_redis(url: str) -> None:
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()


@contextmanager
def fresh_database(admin_url: str, prefix: str) -> Iterator[str]:
    """A PostgreSQL database ``<prefix>_<hex>`` created on ``admin_url`` (an admin URL), dropped on exit; yields
    its URL. The benchmarks' databases and the tests' (:func:`tests.harness.fresh_database`) both."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def bench_database(services: Services, label: str) -> AbstractContextManager[str]:
    """A fresh PostgreSQL database ``triage_bench_<label>_<hex>``, dropped afterwards."""
    return fresh_database(services.postgres_admin_url, f"triage_bench_{re.sub(r'[^a-z0-9]', '_', label.lower())}")


def clean_environ() -> dict[str, str]:
    """This process's environment without any triage or MiMo setting (the tests' child processes' too)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("TRIAGE_", "MIMO_"))}


@dataclass
class TicketSummary:
    """What the database says after a run (times are epoch seconds)."""

    total: int
    finished: int
    statuses: dict[str, int]
    first_created: float | None
    last_created: float | None
    last_finished: float | None
    latencies: list[float]
    #: LLM attempts as triage recorded them, by outcome (``ok``, ``api_error``, ...).
    attempt_outcomes: dict[str, int] = field(default_factory=dict)


class Triage:
    """One triage installation: a database, the broker, the loopback API, and settings of its own."""

    def __init__(self, database_url: str, broker_url: str, api_base_url: str | None, settings: Mapping[str, str],
                 workdir: Path) -> None:
        self.workdir = workdir
        self.env = {**clean_environ(), "TRIAGE_CONFIG": str(REPO / "config" / "triage.toml"),
                    "TRIAGE_DATABASE_URL": database_url, "TRIAGE_BROKER_URL": broker_url, **settings}
        if api_base_url is not None:
            self.env |= {"MIMO_API_KEY": API_KEY, "MIMO_BASE_URL": api_base_url}
        self.asked = dict(settings)
        #: Settings the product refused (unknown, or a value it cannot read), with its reason; dropped.
        self.refused: dict[str, str] = {}
        self.engine: Engine = create_engine(database_url, pool_size=2)

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "triage", *args]

    def upgrade(self) -> None:
        """``triage db upgrade``; settings it refuses are dropped (see :attr:`refused`)."""
        while True:
            done = subprocess.run(self.command("db", "upgrade"), env=self.env, cwd=REPO, capture_output=True,
                                  text=True, check=False)
            if done.returncode == 0:
                return
            refused = [name for name in self.asked if name not in self.refused and f"{name}=" in done.stderr]
            if done.returncode != SETTINGS_REFUSED_STATUS or not refused:
                raise RuntimeError(f"triage db upgrade failed ({done.returncode}): {done.stderr.strip()}")
            for name in refused:
                self.refused[name] = refusal_reason(done.stderr, name)
                self.env.pop(name)

    def submit(self, rows_path: Path) -> float:
        """``triage submit FILE``; the wall-clock seconds it took."""
        started = time.perf_counter()
        with open(self.workdir / "submit.out", "w") as out:
            done = subprocess.run(self.command("submit", str(rows_path)), env=self.env, cwd=REPO, stdout=out,
                                  stderr=subprocess.PIPE, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"triage submit failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
        return time.perf_counter() - started

    def workers(self, count: int, threads: int) -> AbstractContextManager[Running]:
        """``count`` times ``triage worker --concurrency threads``, each ready to consume."""
        argv = self.command("worker", "--concurrency", str(threads), "--loglevel", "INFO")
        return running("worker", [argv] * count, self.env, self.workdir, celery_ready)

    def server(self, port: int) -> AbstractContextManager[Running]:
        """``triage serve --port port`` once its ``/healthz`` answers."""
        argv = self.command("serve", "--port", str(port), "--loglevel", "WARNING")
        return running("serve", [argv], self.env, self.workdir, lambda _: http_ready(f"http://127.0.0.1:{port}"))

    def finished(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM tickets WHERE finished_at IS NOT NULL")).scalar_one())

    def wait_finished(self, total: int, timeout: float, progress: Callable[[int], None]) -> int:
        """Poll until ``total`` tickets have finished or ``timeout`` seconds pass; the count finished."""
        deadline = time.monotonic() + timeout
        while (done := self.finished()) < total and time.monotonic() < deadline:
            progress(done)
            time.sleep(POLL_SECONDS)
        progress(done)
        return done

    def summary(self) -> TicketSummary:
        with self.engine.connect() as conn:
            rows = conn.execute(text("SELECT EXTRACT(EPOCH FROM created_at), EXTRACT(EPOCH FROM finished_at) "
                                     "FROM tickets")).all()
            statuses = conn.execute(text("SELECT status, count(*) FROM tickets GROUP BY status")).all()
            outcomes = conn.execute(text("SELECT outcome, count(*) FROM attempts GROUP BY outcome")).all()
        created = [float(c) for c, _ in rows]
        finished = [(float(c), float(f)) for c, f in rows if f is not None]
        return TicketSummary(
            total=len(rows), finished=len(finished), statuses={str(k): int(v) for k, v in statuses},
            first_created=min(created, default=None), last_created=max(created, default=None),
            last_finished=max((f for _, f in finished), default=None),
            latencies=sorted(f - c for c, f in finished),
            attempt_outcomes={str(k): int(v) for k, v in outcomes})

    def close(self) -> None:
        self.engine.dispose()


def refusal_reason(message: str, name: str) -> str:
    """What the product said about setting ``name`` in ``message``.

    >>> refusal_reason("triage: A=1: bad; TRIAGE_X='y': Extra inputs are not permitted", "TRIAGE_X")
    'Extra inputs are not permitted'
    """
    found = re.search(rf"{re.escape(name)}=(?:'[^']*'|\S*): ([^;\n]+)", message)
    return found.group(1).strip() if found else "refused"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def celery_ready(log: Path) -> bool:
    return bool(READY_LINE.search(log.read_text(errors="replace")))


def http_ready(base_url: str) -> bool:
    try:
        return httpx.get(f"{base_url}/healthz", timeout=2).status_code == HTTP_OK
    except httpx.HTTPError:
        return False


@dataclass(frozen=True)
class Running:
    """Processes started by :func:`running`: their pids, and when the first was seen ready (epoch seconds)."""

    pids: list[int]
    first_ready: float


@contextmanager
def running(name: str, argvs: Sequence[Sequence[str]], env: Mapping[str, str], workdir: Path,
            ready: Callable[[Path], bool]) -> Iterator[Running]:
    """The commands running (stopped with SIGTERM at the end), each logging to ``workdir/name-N.log``,
    once ``ready(log)`` holds for each."""
    with ExitStack() as stack:
        logs: list[Path] = []
        procs: list[subprocess.Popen[Any]] = []
        for number, argv in enumerate(argvs):
            log_path = workdir / f"{name}-{number}.log"
            log: IO[str] = stack.enter_context(open(log_path, "w"))
            proc = subprocess.Popen(argv, env=dict(env), cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
            stack.callback(stop_gracefully, proc, STOP_GRACE_SECONDS)
            logs.append(log_path)
            procs.append(proc)
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        first_ready: float | None = None
        while True:
            seen = [ready(path) for path in logs]
            if any(seen) and first_ready is None:
                first_ready = time.time()
            if all(seen):
                break
            dead = [path for proc, path in zip(procs, logs, strict=True) if proc.poll() is not None]
            if dead or time.monotonic() > deadline:
                tail = (dead or logs)[0].read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{name} did not become ready (log {(dead or logs)[0]}):\n{tail}")
            time.sleep(READY_POLL_SECONDS)
        yield Running([proc.pid for proc in procs], first_ready or time.time())


def write_rows(rows: Sequence[Mapping[str, Any]], path: Path) -> Path:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path
