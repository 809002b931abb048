"""The fleet-wide rate limiter on real Redis, SQLite and PostgreSQL.

Every behaviour test runs on the three backends. The contract's window is 60 s: tests check
the waits the limiter computes against it rather than sleeping them; the few that must see a
budget come back use a window of a fraction of a second.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from math import ceil
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import Engine, select

from triage.ratelimit import (
    DatabaseRateLimiter,
    Headroom,
    RateLimiter,
    RateLimitState,
    RedisRateLimiter,
    make_rate_limiter,
    wait_and_acquire,
)
from triage.settings import RateLimitSettings, SettingsError, load_settings
from triage.store.db import DatabaseNotReadyError, make_engine
from triage.store.models import Base

REPO = Path(__file__).resolve().parent.parent

WINDOW = 60.0
SLACK = 0.01  # seconds: the limiter's clock (Redis, PostgreSQL) against ours, and call overheads
BENCHMARK = Path(__file__).resolve().parent.parent / "benchmarks" / "ratelimit_throughput.py"
BACKENDS = {"redis": "redis_url", "sqlite": "sqlite_url", "postgresql": "postgres_url"}

Make = Callable[..., RateLimiter]


@pytest.fixture(params=list(BACKENDS))
def backend_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue(BACKENDS[request.param])


def _create_table(url: str) -> Engine:
    engine = make_engine(url)
    Base.metadata.create_all(engine, tables=[RateLimitState.__table__])
    return engine


@pytest.fixture
def make(backend_url: str) -> Iterator[Make]:
    """Builds limiters sharing one budget namespace, as separate workers would (a key prefix of this test's own)."""
    prefix = f"test:{uuid.uuid4().hex}"
    engine = None if backend_url.startswith("redis://") else _create_table(backend_url)
    clients: list[redis.Redis] = []

    def build(window_seconds: float = WINDOW, **values: Any) -> RateLimiter:
        settings = RateLimitSettings(key_prefix=prefix, **values)
        if engine is not None:
            return DatabaseRateLimiter(engine, settings, window_seconds=window_seconds)
        clients.append(redis.Redis.from_url(backend_url))
        return RedisRateLimiter(clients[-1], settings, window_seconds=window_seconds)

    yield build
    if engine is not None:
        engine.dispose()
    for client in clients:
        keys = list(client.scan_iter(match=f"{prefix}:*"))
        if keys:
            client.delete(*keys)
        client.close()


def _timed(call: Callable[[], float]) -> tuple[float, float, float]:
    """(started, result, returned) on the monotonic clock."""
    started = time.monotonic()
    result = call()
    return started, result, time.monotonic()


def test_the_request_budget_is_exact_and_the_wait_is_until_the_oldest_grant_leaves(make: Make) -> None:
    worker, other = make(rpm=5), make(rpm=5)
    first_started = time.monotonic()
    assert [worker.acquire("m", 10) for _ in range(5)] == [0.0] * 5
    wait = other.acquire("m", 10)
    elapsed = time.monotonic() - first_started
    assert WINDOW - elapsed - SLACK <= wait <= WINDOW + SLACK
    again = other.acquire("m", 10)
    assert 0 < again <= wait, "a refused call takes nothing: the wait only shrinks"


def test_refused_calls_take_nothing_and_the_budget_returns_after_the_wait(make: Make) -> None:
    limiter = make(window_seconds=0.5, rpm=2)
    assert limiter.acquire("m", 1) == limiter.acquire("m", 1) == 0.0
    waits = [limiter.acquire("m", 1) for _ in range(10)]
    assert all(0 < wait <= 0.5 for wait in waits)
    time.sleep(limiter.acquire("m", 1))
    assert limiter.acquire("m", 1) == 0.0


def test_the_token_budget_is_honoured(make: Make) -> None:
    limiter = make(tpm=1000)
    assert limiter.acquire("m", 600) == 0.0
    assert WINDOW - 1 < limiter.acquire("m", 500) <= WINDOW + SLACK
    assert limiter.acquire("m", 400) == 0.0, "exactly the budget fits"
    assert limiter.acquire("m", 0) == 0.0, "no tokens: only the request counts"
    assert limiter.acquire("m", 1) > WINDOW - 1


def test_the_token_wait_lasts_until_enough_tokens_have_left(make: Make) -> None:
    limiter = make(tpm=1000)
    spans: list[tuple[float, float]] = []
    for _ in range(3):
        started, wait, returned = _timed(lambda: limiter.acquire("m", 300))
        assert wait == 0.0
        spans.append((started, returned))
        time.sleep(0.2)
    started, wait, returned = _timed(lambda: limiter.acquire("m", 500))
    # 900 used: the first grant leaving frees 300 (not enough), the second 600: its expiry is the wait.
    second_started, second_returned = spans[1]
    assert second_started + WINDOW - returned - SLACK <= wait <= second_returned + WINDOW - started + SLACK


def test_requests_no_budget_can_grant_are_refused(make: Make) -> None:
    limiter = make(tpm=1000)
    with pytest.raises(ValueError, match="can never fit"):
        limiter.acquire("m", 1001)
    with pytest.raises(ValueError, match="non-negative"):
        limiter.acquire("m", -1)


def _blocked_for(seconds: float, penalize: Callable[[], None], acquire: Callable[[], float]) -> bool:
    """Whether ``acquire`` right after ``penalize`` waits what is left of ``seconds``."""
    started = time.monotonic()
    penalize()
    wait = acquire()
    return seconds - (time.monotonic() - started) - SLACK <= wait <= seconds + SLACK


def test_penalize_blocks_every_caller_of_that_model_for_the_duration(make: Make) -> None:
    saw_429, other_worker = make(), make()
    assert _blocked_for(30, lambda: saw_429.penalize("m", 30), lambda: other_worker.acquire("m", 1))
    assert other_worker.acquire("other-model", 1) == 0.0
    saw_429.penalize("m", 5)
    assert other_worker.acquire("m", 1) > 29, "a shorter Retry-After does not shorten the block"
    assert _blocked_for(45, lambda: saw_429.penalize("m", 45), lambda: other_worker.acquire("m", 1))
    saw_429.penalize("m", 0)
    with pytest.raises(ValueError, match="finite"):
        saw_429.penalize("m", float("nan"))


def test_the_block_ends_on_time_and_blocked_calls_take_nothing(make: Make) -> None:
    limiter = make(rpm=1)
    assert _blocked_for(0.3, lambda: limiter.penalize("m", 0.3), lambda: limiter.acquire("m", 1))
    time.sleep(limiter.acquire("m", 1))
    assert limiter.acquire("m", 1) == 0.0
    assert limiter.acquire("m", 1) > WINDOW - 1, "the one request of the budget is now taken"


def test_peek_reads_the_window_and_takes_nothing(make: Make) -> None:
    limiter, other = make(rpm=3, per_model={"big": {"rpm": 7}}), make(rpm=3, per_model={"big": {"rpm": 7}})
    assert (limiter.peek("m"), limiter.peek("big")) == (Headroom(3), Headroom(7)), "a model never called: all of it"
    assert [limiter.peek("m").left for _ in range(5)] == [3] * 5, "reading takes nothing"
    started = time.monotonic()
    assert limiter.acquire("m", 1) == 0.0 and other.acquire("m", 1) == 0.0
    assert (limiter.peek("m").left, other.peek("m").left, limiter.peek("big").left) == (1, 1, 7)
    assert other.acquire("m", 1) == 0.0
    room = limiter.peek("m")
    assert room.left == 0 and WINDOW - (time.monotonic() - started) - SLACK <= room.wait <= WINDOW + SLACK, \
        "the wait is until the oldest grant leaves the window"
    asked = time.monotonic()
    refused, peeked = limiter.acquire("m", 1), limiter.peek("m").wait
    between = time.monotonic() - asked
    assert refused > 0 and refused - between - SLACK <= peeked <= refused + SLACK, "peek and acquire agree"
    blocked = time.monotonic()
    other.penalize("big", 30)
    big = limiter.peek("big")
    assert big.left == 0 and 30 - (time.monotonic() - blocked) - SLACK <= big.wait <= 30 + SLACK, \
        "nothing is left while a 429 block lasts"


def test_peek_comes_back_as_grants_leave_the_window(make: Make) -> None:
    limiter = make(window_seconds=0.3, rpm=2)
    assert limiter.acquire("m", 1) == 0.0 and limiter.peek("m").left == 1
    assert limiter.acquire("m", 1) == 0.0 and limiter.peek("m").left == 0
    time.sleep(0.31)
    assert limiter.peek("m") == Headroom(2)


def test_models_have_independent_budgets_and_their_own_overrides(make: Make) -> None:
    limiter = make(rpm=1, per_model={"big": {"rpm": 3}})
    assert limiter.acquire("a", 1) == limiter.acquire("b", 1) == 0.0
    assert limiter.acquire("a", 1) > 0
    assert [limiter.acquire("big", 1) for _ in range(4)][:3] == [0.0] * 3
    assert limiter.acquire("big", 1) > 0


def test_threads_hammering_a_budget_get_exactly_the_budget(make: Make) -> None:
    def worker(_: int) -> list[float]:
        limiter = make(rpm=10)
        return [limiter.acquire("m", 5) for _ in range(6)]

    with ThreadPoolExecutor(16) as pool:
        waits = [wait for result in pool.map(worker, range(16)) for wait in result]
    assert waits.count(0.0) == 10
    assert all(0 < wait <= WINDOW for wait in waits if wait)


def test_wait_and_acquire_sleeps_only_waits_that_fit(make: Make) -> None:
    limiter = make(window_seconds=0.3, rpm=1)
    assert limiter.acquire("m", 1) == 0.0
    slept: list[float] = []
    left = wait_and_acquire(limiter, "m", 1, max_wait=0.01, sleep=slept.append)
    assert 0 < left <= 0.3 and slept == []
    assert wait_and_acquire(limiter, "m", 1, max_wait=5) == 0.0


def _benchmark(url: str, **options: Any) -> dict[str, Any]:
    args = [arg for key, value in options.items() for arg in (f"--{key}", str(value))]
    done = subprocess.run([sys.executable, str(BENCHMARK), "--url", url, "--json", *args],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_processes_hammering_a_budget_get_exactly_the_budget(backend_url: str) -> None:
    report = _benchmark(backend_url, processes=3, threads=3, rpm=7, window=WINDOW, duration=1.0)
    assert report["grants"] == 7


def test_processes_never_exceed_the_budget_in_any_window(backend_url: str) -> None:
    report = _benchmark(backend_url, processes=3, threads=3, rpm=5, window=0.5, duration=1.5)
    spans = report["spans"]
    assert report["grants"] >= 5
    assert report["peak_per_window"] <= 5
    lasted = max(end for _, end in spans) - min(start for start, _ in spans)
    assert report["grants"] <= 5 * ceil(lasted / 0.5), "every closed window holds at most rpm grants"


def test_redis_keys_are_namespaced_and_expire(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    prefix = f"test:{uuid.uuid4().hex}"
    limiter = RedisRateLimiter(client, RateLimitSettings(key_prefix=prefix), window_seconds=2)
    limiter.acquire("m", 1)
    limiter.penalize("m", 0.5)
    keys = sorted(key.decode() for key in client.scan_iter(match=f"{prefix}:*"))
    assert keys == [f"{prefix}:{{m}}:blocked", f"{prefix}:{{m}}:log"]
    assert 0 < client.pttl(keys[0]) <= 501 and 2000 < client.pttl(keys[1]) <= 3000
    client.delete(*keys)
    client.close()


def test_the_database_log_is_pruned_to_the_window(database_url: str) -> None:
    engine = _create_table(database_url)
    limiter = DatabaseRateLimiter(engine, RateLimitSettings(key_prefix="p"), window_seconds=0.2)
    for _ in range(3):
        limiter.acquire("m", 1)
    time.sleep(0.25)
    limiter.acquire("m", 1)
    with engine.connect() as conn:
        assert len(conn.execute(select(RateLimitState.grants)).scalar_one()) == 1
    engine.dispose()


def test_settings_per_model_and_environment_overrides() -> None:
    settings = RateLimitSettings(tpm=5000, per_model={"pro": {"rpm": 30}, "flash": {"tpm": 99}})
    assert (settings.budget("pro").rpm, settings.budget("pro").tpm) == (30, 5000)
    assert (settings.budget("flash").rpm, settings.budget("flash").tpm) == (100, 99)
    assert (settings.budget("other").rpm, settings.budget("other").tpm) == (100, 5000)
    env = {"TRIAGE_RATE_LIMIT_RPM": "10", "TRIAGE_RATE_LIMIT_TPM": "2000",
           "TRIAGE_CONFIG": str(REPO / "config" / "triage.toml")}
    overridden = load_settings(env).rate_limit
    assert {(b.rpm, b.tpm) for b in map(overridden.budget, ["pro", "mimo-v2-flash"])} == {(10, 2000)}
    with pytest.raises(SettingsError, match="TRIAGE_RATE_LIMIT_RPM='0'"):
        load_settings({**env, "TRIAGE_RATE_LIMIT_RPM": "0"})
    with pytest.raises(ValueError, match="backend"):
        RateLimitSettings(backend="memcached")  # type: ignore[arg-type]


def test_the_factory_follows_the_broker(redis_url: str, sqlite_url: str) -> None:
    engine = _create_table(sqlite_url)
    auto = RateLimitSettings()
    assert isinstance(make_rate_limiter(auto, redis_url, engine), RedisRateLimiter)
    assert isinstance(make_rate_limiter(auto, "sqla+" + sqlite_url, engine), DatabaseRateLimiter)
    database = RateLimitSettings(backend="database")
    assert isinstance(make_rate_limiter(database, redis_url, engine), DatabaseRateLimiter)
    with pytest.raises(ValueError, match="redis://"):
        make_rate_limiter(RateLimitSettings(backend="redis"), "sqla+" + sqlite_url, engine)
    with pytest.raises(ValueError, match="engine"):
        make_rate_limiter(auto, "sqla+" + sqlite_url)
    engine.dispose()
    bare = make_engine(sqlite_url.replace("triage.sqlite3", "bare.sqlite3"))
    with pytest.raises(DatabaseNotReadyError, match="triage db upgrade"):
        make_rate_limiter(auto, "sqla+sqlite://", bare)
    bare.dispose()
