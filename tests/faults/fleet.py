"""Fault-suite machinery: a Redis of our own, killable triage processes, a resilient submitter, the ledger.

A :class:`Fleet` is one fault run in the production shape: a fresh PostgreSQL database, a
``redis-server`` of its own (append-only file on, as in docker-compose, fsync on every write) as
broker and rate limiter, and real ``triage`` processes started, killed and restarted by the
test. The :class:`Ledger` is the verdict: every submitted conversation must end exactly once as
``routed`` or ``needs_review``, none missing, none twice, none extracted after it finished.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, Protocol

import pytest
import redis
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from benchmarks.stack import free_port
from tests.harness import REPO, Stack
from triage.cli.processes import stop_gracefully

#: Every fault run's conversations come from this source; their external ids are ``FLT-00001``...
SOURCE = "faults"
#: The marker each conversation carries, which the loopback API sees in every request for it.
MARKER = re.compile(r"\[FLT-\d{5}\]")
FINISHED = ("routed", "needs_review")
#: Small, mutually consistent timings (the settings check wants visibility > longest wait + longest task:
#: 20 > max(2, 5, 5) + 3 * 2). ``stuck_after`` is also a worker's claim on a delivery. The ticket lease and
#: its heartbeat keep their defaults (60 s, renewed every 20 s), so the recovery time measured after a kill is
#: the one a deployment gets; a kill test also runs the sweep at its default interval (:data:`DEFAULT_SWEEP`).
FAULT_SETTINGS = {
    "TRIAGE__EXTRACTION__TIMEOUT_SECONDS": "2",
    "TRIAGE__RETRY__BACKOFF_BASE_SECONDS": "0.2",
    "TRIAGE__RETRY__BACKOFF_MAX_SECONDS": "2",
    "TRIAGE__RETRY__RETRY_AFTER_MAX_SECONDS": "5",
    "TRIAGE__WRITEBACK__RETRY_AFTER_MAX_SECONDS": "5",
    "TRIAGE__WRITEBACK__TIMEOUT_SECONDS": "2",
    "TRIAGE__RETRY__MAX_RETRIES": "3",
    "TRIAGE__WORKER__STUCK_AFTER_SECONDS": "15",
    "TRIAGE__WORKER__SWEEP_INTERVAL_SECONDS": "2",
    "TRIAGE__WORKER__VISIBILITY_TIMEOUT_SECONDS": "20",
    "TRIAGE_RATE_LIMIT_RPM": "100000",
    "TRIAGE_RATE_LIMIT_TPM": "1000000000",
    "TRIAGE_CONCURRENCY": "8",
}
#: The shipped sweep interval, for the faults whose recovery goes through an expired lease.
DEFAULT_SWEEP = {"TRIAGE__WORKER__SWEEP_INTERVAL_SECONDS": "15"}
TEXTS = (
    "My router keeps rebooting every hour, please help",
    "How do I set a timer on my Watch S1?",
    "I am very unhappy: the delivery is two weeks late and nobody answers",
    "我的小米手环8充不进电了，希望尽快处理",
    "The speaker can't connect to Wi-Fi since the update, urgent please",
)


def unavailable(message: str) -> NoReturn:
    """Skip for a missing tool, or fail with ``TRIAGE_REQUIRE_SERVICES=1`` (as in CI)."""
    if os.environ.get("TRIAGE_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{message}; TRIAGE_REQUIRE_SERVICES=1 makes this a failure", pytrace=False)
    pytest.skip(message)


def fault_count() -> int:
    """Conversations per fault run: ``TRIAGE_FAULTS_N`` (default 500)."""
    return int(os.environ.get("TRIAGE_FAULTS_N", "500"))


def fault_deadline() -> float:
    """Seconds a run may take to finish every ticket after the faults: ``TRIAGE_FAULTS_DEADLINE`` (240)."""
    return float(os.environ.get("TRIAGE_FAULTS_DEADLINE", "240"))


def conversation_rows(n: int) -> list[dict[str, Any]]:
    """``n`` submission lines, each with its marker ``[FLT-nnnnn]`` in the text.

    >>> conversation_rows(1)[0]["external_id"], MARKER.search(conversation_rows(1)[0]["text"]).group(0)
    ('FLT-00000', '[FLT-00000]')
    """
    return [{"source": SOURCE, "external_id": f"FLT-{i:05d}", "text": f"{TEXTS[i % len(TEXTS)]} [FLT-{i:05d}]"}
            for i in range(n)]


def marker_id(marker: str) -> str:
    """The external id behind a marker: ``[FLT-00007]`` -> ``FLT-00007``."""
    return marker.strip("[]")


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    """Poll ``condition`` until it holds (``True``) or ``timeout`` seconds pass (``False``)."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)


def child_pids(pid: int) -> list[int]:
    """The live children of ``pid``, read from /proc (psutil is not a dependency)."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            children.append(int(entry.name))
    return sorted(children)


class RedisServer:
    """A ``redis-server`` of our own on a free port with its append-only file in ``directory``.

    :meth:`restart` brings it back on the same port with the same data, as a supervisor would.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_connect_timeout=1, socket_timeout=5)

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
             "--appendonly", "yes", "--appendfsync", "always", "--save", "",
             "--logfile", str(self.directory / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not wait_until(self._answers, 20, 0.05):
            raise AssertionError(f"redis-server on port {self.port} did not start; see {self.directory}/redis.log")

    def _answers(self) -> bool:
        try:
            return bool(self.client().ping())
        except redis.RedisError:
            return False

    def stop(self, *, crash: bool = False) -> None:
        """``SHUTDOWN NOSAVE`` (the AOF is already on disk), or ``kill -9`` with ``crash``."""
        if self.process is None:
            return
        if crash:
            self.process.kill()
        else:
            with suppress(redis.RedisError):  # the server closes the connection as it goes
                self.client().shutdown(nosave=True)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def restart(self, *, crash: bool = False, down_seconds: float = 2.0) -> None:
        self.stop(crash=crash)
        time.sleep(down_seconds)
        self.start()
        self.restarts += 1


class Service:
    """A long-running command (a worker, beat) whose output is appended to one log across restarts.

    Supervised like docker-compose's ``restart: unless-stopped``: a watcher thread starts the
    command again whenever it exits, until :meth:`stop`. ``exits`` records every exit the test did
    not cause itself (status and time), so a process that dies of a fault shows in the numbers.
    """

    def __init__(self, name: str, argv: Sequence[str], env: Mapping[str, str], log_path: Path) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = dict(env)
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.kills = 0
        self.exits: list[int] = []
        self._lock = threading.RLock()
        self._wanted = False
        self._watcher: threading.Thread | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} is not running"
        return self.process.pid

    def start(self) -> Service:
        with self._lock:
            self._spawn()
            self._wanted = True
        if self._watcher is None:
            self._watcher = threading.Thread(target=self._watch, name=f"supervise-{self.name}", daemon=True)
            self._watcher.start()
        return self

    def _spawn(self) -> None:
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== start #{self.starts + 1}: {' '.join(self.argv)}\n".encode())
            log.flush()
            self.process = subprocess.Popen(self.argv, env=self.env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        self.starts += 1

    def _watch(self) -> None:
        while True:
            time.sleep(0.2)
            with self._lock:
                if not self._wanted:
                    return
                if self.process is not None and self.process.poll() is not None:
                    self.exits.append(self.process.returncode)
                    self._spawn()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill9(self) -> None:
        """``kill -9`` the process itself (not its children); the supervisor starts it again at once."""
        with self._lock:
            os.kill(self.pid, signal.SIGKILL)
            assert self.process is not None
            self.process.wait(20)
            self.kills += 1
            self._spawn()

    def children(self) -> list[int]:
        with self._lock:
            return child_pids(self.pid) if self.alive() else []

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM (a warm shutdown), then SIGKILL to its whole process group if it lingers."""
        with self._lock:
            self._wanted = False
            process, self.process = self.process, None
        if process is None:
            return
        group = process.pid  # start_new_session: the group we created, and only ours
        stop_gracefully(process, timeout)
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGKILL)  # orphaned pool children, if any

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class Submitter(threading.Thread):
    """``triage submit`` in chunks, in the background; a chunk that fails is submitted again.

    Submitting is idempotent (same source + external id: one ticket), so re-sending a chunk after
    a crash is what any client would do. ``unpublished`` counts tickets stored while the broker
    was down (``triage submit`` says so on stderr; the sweep re-enqueues them).
    """

    def __init__(self, stack: Stack, rows: Sequence[dict[str, Any]], chunk: int = 100,
                 timeout: float = 300) -> None:
        super().__init__(name="submitter", daemon=True)
        self.stack = stack
        self.rows = list(rows)
        self.chunk = chunk
        self.timeout = timeout
        self.sent = 0
        self.failures: list[str] = []
        self.unpublished = 0
        self.done_at: float | None = None
        self.gave_up = False

    def run(self) -> None:
        deadline = time.monotonic() + self.timeout
        for start in range(0, len(self.rows), self.chunk):
            chunk = self.rows[start:start + self.chunk]
            stdin = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in chunk)
            while True:
                try:
                    result = self.stack.cli("submit", "-", stdin=stdin, timeout=120)
                    self.unpublished += result.stderr.count("stored but not enqueued")
                    if result.returncode == 0 and len(result.stdout.splitlines()) == len(chunk):
                        break
                    self.failures.append(f"exit {result.returncode}: {result.stderr.strip()[-300:]}")
                except subprocess.TimeoutExpired as exc:
                    self.failures.append(f"timeout: {exc}")
                if time.monotonic() > deadline:
                    self.gave_up = True
                    return
                time.sleep(1)
            self.sent += len(chunk)
        self.done_at = time.monotonic()

    @property
    def done(self) -> bool:
        return self.done_at is not None or self.gave_up


class RequestLog(Protocol):
    """What the ledger needs from the loopback API (:class:`tests.fakeapi.FakeMiMo`)."""

    requests: list[dict[str, Any]]

    def times_by_marker(self, pattern: str | re.Pattern[str]) -> dict[str, list[float]]: ...


@dataclass
class Ledger:
    """One fault run's verdict and numbers."""

    fault: str
    submitted: int
    routed: int
    needs_review: int
    lost: int
    duplicated: int
    wall_seconds: float
    details: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        return self.format_row(self.to_json())

    @staticmethod
    def format_row(row: Mapping[str, Any]) -> str:
        details = row.get("details", {})
        extra = ", ".join(f"{k}={details[k]}" for k in ("recovery_max_seconds", "requeued", "api_requests", "injected")
                          if k in details)
        verdict = "OK" if not row.get("problems") else "FAILED: " + "; ".join(row["problems"])
        return (f"{row['fault']}: submitted={row['submitted']} routed={row['routed']} "
                f"needs_review={row['needs_review']} lost={row['lost']} duplicated={row['duplicated']} "
                f"wall={row['wall_seconds']:.1f}s ({extra}) {verdict}")

    def to_json(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self), default=str))


def compute_ledger(fault: str, stack: Stack, external_ids: Sequence[str], wall_seconds: float,
                   api: RequestLog, injected: Mapping[str, Any]) -> Ledger:
    """Check the database (and the API's request log) for every submitted conversation."""
    with stack.engine.connect() as conn:
        tickets = conn.execute(text(
            "SELECT c.external_id, t.id, t.status, t.finished_at, t.requeue_count, t.fallback_reason "
            "FROM conversations c JOIN tickets t ON t.conversation_id = c.id WHERE c.source = :source"),
            {"source": SOURCE}).all()
        finishes = dict(conn.execute(text(
            "SELECT ticket_id, count(*) FROM events WHERE kind IN ('routed', 'needs_review') "
            "GROUP BY ticket_id")).all())
        # Attempts stored after the ticket finished, other than those of the finishing transaction itself
        # (its rows share the transaction id, xmin, with the finishing audit event).
        late_attempts = dict(conn.execute(text(
            "SELECT a.ticket_id, count(*) FROM attempts a JOIN tickets t ON t.id = a.ticket_id "
            "WHERE t.finished_at IS NOT NULL AND a.created_at > t.finished_at AND NOT EXISTS ("
            "  SELECT 1 FROM events e WHERE e.ticket_id = a.ticket_id "
            "  AND e.kind IN ('routed', 'needs_review') AND e.xmin = a.xmin) "
            "GROUP BY a.ticket_id")).all())
    by_external: dict[str, list[Any]] = defaultdict(list)
    for row in tickets:
        by_external[row.external_id].append(row)
    wanted = set(external_ids)
    ours = [row for ext in wanted for row in by_external.get(ext, [])]
    missing = sorted(wanted - set(by_external))
    extra_tickets = sum(len(rows) - 1 for ext, rows in by_external.items() if ext in wanted and len(rows) > 1)
    statuses = Counter(row.status for row in ours)
    unfinished = {status: count for status, count in statuses.items() if status not in FINISHED}
    finished = [row for row in ours if row.status in FINISHED]
    finished_twice = sorted(row.id for row in finished if finishes.get(row.id, 0) > 1)
    unaudited = sorted(row.id for row in finished if finishes.get(row.id, 0) == 0)
    late_requests: dict[int, int] = {}
    times = api.times_by_marker(MARKER)
    for row in finished:
        after = [t for t in times.get(f"[{row.external_id}]", []) if t > _epoch(row.finished_at)]
        if after:
            late_requests[row.id] = len(after)
    after_finish = sorted(set(late_attempts) & {row.id for row in ours} | set(late_requests))
    lost = len(missing) + sum(unfinished.values())
    duplicated = extra_tickets + len(set(finished_twice) | set(after_finish))
    details = {
        "missing": len(missing), "unfinished": unfinished, "extra_tickets": extra_tickets,
        "finished_twice": len(finished_twice), "unaudited_finishes": len(unaudited),
        "tickets_with_attempts_after_finish": len(set(late_attempts) & {row.id for row in ours}),
        "tickets_with_api_requests_after_finish": len(late_requests),
        "requeued": sum(row.requeue_count for row in ours),
        "max_requeue_count": max((row.requeue_count for row in ours), default=0),
        "api_requests": len(api.requests),
        "fallback_reasons": dict(Counter(row.fallback_reason for row in ours if row.status == "needs_review")),
        "injected": dict(injected),
        "samples": {"missing": missing[:5], "finished_twice": finished_twice[:5], "after_finish": after_finish[:5],
                    "unfinished": [(row.id, row.status) for row in ours if row.status not in FINISHED][:5]},
    }
    problems = []
    if missing:
        problems.append(f"{len(missing)} submitted conversations have no ticket, e.g. {missing[:5]}")
    if unfinished:
        problems.append(f"unfinished tickets by status: {unfinished}")
    if extra_tickets:
        problems.append(f"{extra_tickets} extra tickets for the same conversation")
    if finished_twice:
        problems.append(f"{len(finished_twice)} tickets finished more than once, e.g. {finished_twice[:5]}")
    if unaudited:
        problems.append(f"{len(unaudited)} finished tickets have no finishing audit event, e.g. {unaudited[:5]}")
    if after_finish:
        problems.append(f"{len(after_finish)} tickets extracted after they finished, e.g. {after_finish[:5]} "
                        f"(attempts: {len(late_attempts)}, API requests: {len(late_requests)})")
    return Ledger(fault, submitted=len(wanted), routed=statuses.get("routed", 0),
                  needs_review=statuses.get("needs_review", 0), lost=lost, duplicated=duplicated,
                  wall_seconds=round(wall_seconds, 1), details=details, problems=problems)


def _epoch(moment: datetime | None) -> float:
    return moment.timestamp() if moment is not None else float("inf")


@dataclass(frozen=True)
class FaultMark:
    """A fault's moment and the tickets a worker held then (``processing`` under a live lease)."""

    at: datetime
    held: tuple[int, ...]


def recovery_seconds(stack: Stack, marks: Sequence[FaultMark]) -> float | None:
    """The longest time from a fault to the final status of a ticket held at that moment (``None``: no
    ticket was held at any fault). A ticket never finished counts as infinite: the ledger reports it lost."""
    ids = sorted({ticket_id for mark in marks for ticket_id in mark.held})
    if not ids:
        return None
    with stack.engine.connect() as conn:
        finished = dict(conn.execute(text("SELECT id, finished_at FROM tickets WHERE id = ANY(:ids)"),
                                     {"ids": ids}).all())
    return round(max(_epoch(finished.get(ticket_id)) - mark.at.timestamp()
                     for mark in marks for ticket_id in mark.held), 1)


class Fleet:
    """One fault run: database, private Redis, processes, submission, the wait and the ledger."""

    def __init__(self, name: str, database_url: str, directory: Path, api_base_url: str,
                 env: Mapping[str, str]) -> None:
        self.name = name
        self.directory = directory
        self.database_url = database_url
        self.api_base_url = api_base_url
        self.extra_env = dict(env)
        self.redis = RedisServer(directory / "redis")
        self.services: dict[str, Service] = {}
        self.stack: Stack
        self.submitter: Submitter | None = None
        self.started_at = 0.0
        self.faults: list[FaultMark] = []

    def open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.redis.start()
        env = {**FAULT_SETTINGS, **self.extra_env, "TMPDIR": str(self.directory)}
        self.stack = Stack(self.database_url, self.redis.url, self.api_base_url, env)
        self.stack.migrate()

    def close(self) -> None:
        for service in self.services.values():
            service.stop()
        self.redis.stop()
        self.stack.close()

    # processes -----------------------------------------------------------------------------

    def service(self, name: str, argv: Sequence[str]) -> Service:
        """Start ``argv`` as ``name`` (logged to ``<dir>/<name>.log``); stopped at the end of the test."""
        service = Service(name, argv, self.stack.env, self.directory / f"{name}.log")
        self.services[name] = service
        return service.start()

    def worker(self, name: str = "worker", concurrency: int | None = None) -> Service:
        """``triage worker`` (threads pool)."""
        argv = [sys.executable, "-m", "triage", "worker", "--loglevel", "INFO"]
        return self.service(name, argv + (["--concurrency", str(concurrency)] if concurrency else []))

    def prefork_worker(self, name: str = "prefork", concurrency: int = 2) -> Service:
        """The same app on Celery's prefork pool: a parent process and ``concurrency`` pool children.

        ``celery -A triage.worker worker --pool=prefork`` would not do: Celery takes ``prefork`` on
        the command line for its default and lets the app's ``worker_pool = "threads"`` win.
        """
        code = ("from triage.worker import app; app.conf.worker_pool = 'prefork'; "
                f"app.worker_main(['worker', '--concurrency={concurrency}', '--queues=triage,fallback', "
                "'--loglevel=INFO'])")
        return self.service(name, [sys.executable, "-c", code])

    def beat(self, name: str = "beat") -> Service:
        return self.service(name, [sys.executable, "-m", "triage", "beat", "--loglevel", "INFO",
                                   "--schedule", str(self.directory / f"{name}-schedule")])

    # work ----------------------------------------------------------------------------------

    def submit(self, rows: Sequence[dict[str, Any]], chunk: int = 100) -> Submitter:
        """Start submitting ``rows`` in the background; the wall clock starts now."""
        self.started_at = time.monotonic()
        self.submitter = Submitter(self.stack, rows, chunk)
        self.submitter.start()
        return self.submitter

    def counts(self) -> Counter[str] | None:
        """Ticket statuses of this run's conversations; ``None`` while the database does not answer."""
        try:
            with self.stack.engine.connect() as conn:
                rows = conn.execute(text(
                    "SELECT t.status, count(*) FROM tickets t JOIN conversations c ON c.id = t.conversation_id "
                    "WHERE c.source = :source GROUP BY t.status"), {"source": SOURCE}).all()
        except SQLAlchemyError:
            return None
        return Counter({row[0]: row[1] for row in rows})

    def claimed_since(self, since: datetime) -> int:
        """Tickets claimed (``processing``) after ``since``: work in a worker's hands right now."""
        try:
            with self.stack.engine.connect() as conn:
                return int(conn.execute(text(
                    "SELECT count(*) FROM tickets t JOIN conversations c ON c.id = t.conversation_id "
                    "WHERE c.source = :source AND t.status = 'processing' AND t.updated_at > :since"),
                    {"source": SOURCE, "since": since}).scalar_one())
        except SQLAlchemyError:
            return 0

    def held(self) -> tuple[int, ...]:
        """Tickets in a worker's hands right now: ``processing`` under a lease that has not run out."""
        try:
            with self.stack.engine.connect() as conn:
                return tuple(conn.execute(text(
                    "SELECT t.id FROM tickets t JOIN conversations c ON c.id = t.conversation_id "
                    "WHERE c.source = :source AND t.status = 'processing' AND t.lease_until > now()"),
                    {"source": SOURCE}).scalars())
        except SQLAlchemyError:
            return ()

    def mark_fault(self) -> FaultMark:
        """Note a fault about to be injected now, with the tickets held at this moment (for the recovery time)."""
        mark = FaultMark(datetime.now(UTC), self.held())
        self.faults.append(mark)
        return mark

    def finished(self) -> int:
        counts = self.counts()
        return -1 if counts is None else sum(counts[s] for s in FINISHED)

    def stored(self) -> int:
        counts = self.counts()
        return -1 if counts is None else sum(counts.values())

    def wait_all_finished(self, n: int, timeout: float | None = None) -> float:
        """Wait until the submitter is done and ``n`` tickets are finished; the wall time so far."""
        submitter = self.submitter
        wait_until(lambda: (submitter is None or submitter.done) and self.finished() >= n,
                   fault_deadline() if timeout is None else timeout, 0.5)
        return time.monotonic() - self.started_at

    def ledger(self, api: RequestLog, rows: Sequence[dict[str, Any]], wall_seconds: float,
               injected: Mapping[str, Any], settle: float = 6.0) -> Ledger:
        """After ``settle`` quiet seconds (late redeliveries and sweeps get their chance), the verdict."""
        time.sleep(settle)
        injected = dict(injected)
        exits = {name: service.exits for name, service in self.services.items() if service.exits}
        if exits:
            injected["unexpected_exits"] = exits
        if self.submitter is not None:
            injected |= {"submit_retries": len(self.submitter.failures),
                         "stored_not_enqueued": self.submitter.unpublished}
        ledger = compute_ledger(self.name, self.stack, [row["external_id"] for row in rows], wall_seconds, api,
                                injected)
        if self.faults:
            ledger.details["recovery_max_seconds"] = recovery_seconds(self.stack, self.faults)
            ledger.details["held_at_faults"] = [len(mark.held) for mark in self.faults]
        return ledger

    def logs_tail(self, lines: int = 40) -> str:
        """The end of every process's log, for an assertion message."""
        parts = []
        for service in self.services.values():
            parts.append(f"--- {service.name} ({service.log_path})\n" + "\n".join(service.log().splitlines()[-lines:]))
        return "\n".join(parts)


class FleetFactory(Protocol):
    def __call__(self, name: str, api_base_url: str, **env: str) -> Fleet: ...


def _postgres_version() -> str:
    return sorted(os.listdir("/etc/postgresql"))[-1]


def require_pg_ctlcluster() -> None:
    """The PostgreSQL restart needs Debian's ``pg_ctlcluster`` and a cluster under /etc/postgresql."""
    if shutil.which("pg_ctlcluster") is None or not Path("/etc/postgresql").is_dir():
        unavailable("pg_ctlcluster is not available to restart the shared PostgreSQL cluster")


def pg_ctlcluster(action: str, *options: str) -> subprocess.CompletedProcess[str]:
    """``pg_ctlcluster [options] VERSION main ACTION`` for the shared cluster."""
    return subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", *options, _postgres_version(), "main",
                           action], capture_output=True, text=True, timeout=120, check=False)


def postgres_ready() -> bool:
    return subprocess.run(["pg_isready", "-h", "127.0.0.1", "-p", "5432", "-q"], check=False,
                          timeout=10).returncode == 0


@contextmanager
def postgres_restored() -> Iterator[None]:
    """Whatever happens inside, the shared PostgreSQL cluster is running again afterwards."""
    try:
        yield
    finally:
        if not postgres_ready():
            pg_ctlcluster("start")
        if not wait_until(postgres_ready, 60, 0.5):
            raise AssertionError("the shared PostgreSQL cluster did not come back; start it with "
                                 f"pg_ctlcluster --skip-systemctl-redirect {_postgres_version()} main start")
