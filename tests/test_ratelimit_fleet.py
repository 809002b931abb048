"""The fleet obeys one budget: several worker processes against a loopback API that counts requests.

The budget window is shortened (``rate_limit.window_seconds``) so the test takes seconds, not
minutes; the limiter's code path is the one used with the 61 s window in production (the API
counts per 60 s; the extra second covers a granted call's way to the API, e.g. a new process's
first connection).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack

import pytest
import redis

from tests.fakeapi import FakeMiMo
from tests.harness import Stack

pytestmark = pytest.mark.e2e  # make e2e: real processes end to end, left out of make test

RPM = 8           # requests per window, for the whole fleet
WINDOW = 3.0      # the API's window, seconds (60 in production)
MARGIN = 1.0      # the limiter's window is longer by this (as in production): a call's way to the API
WORKERS = 3       # processes
MEASURE = 3       # windows measured once the fleet is busy
TICKETS = 40


def _peak(times: list[float], window: float) -> int:
    """Most requests in any window of ``window`` seconds (closed interval)."""
    peak, start = 0, 0
    for end, at in enumerate(times):
        while at - times[start] > window:
            start += 1
        peak = max(peak, end - start + 1)
    return peak


@pytest.fixture
def stack(redis_url: str, postgres_url: str) -> Iterator[tuple[Stack, FakeMiMo]]:
    """The production shape (several hosts share Redis); the database backend's multi-process
    guarantee is tested in test_ratelimit.py."""
    with FakeMiMo() as api:
        redis.Redis.from_url(redis_url).flushdb()
        stack = Stack(postgres_url, redis_url, api.base_url, {
            "TRIAGE_RATE_LIMIT_RPM": str(RPM), "TRIAGE__RATE_LIMIT__WINDOW_SECONDS": str(WINDOW + MARGIN),
            "TRIAGE__EXTRACTION__BATCH_MODE": "never",  # the budget is counted in calls: one per ticket
            "TRIAGE__RATE_LIMIT__KEY_PREFIX": f"test-fleet-{time.time_ns()}"})
        stack.migrate()
        yield stack, api
        stack.close()


def test_worker_processes_share_one_budget(stack: tuple[Stack, FakeMiMo]) -> None:
    fleet, api = stack
    fleet.submit([{"source": "load", "external_id": f"L-{i}", "text": f"Router {i} broken"} for i in range(TICKETS)])
    with ExitStack() as workers:
        for _ in range(WORKERS):
            workers.enter_context(fleet.worker("--concurrency", "4"))
        deadline = time.monotonic() + 60
        while len(api.requests) < RPM * (MEASURE + 1) and time.monotonic() < deadline:  # the budget is the limit
            time.sleep(0.2)
    times = sorted(r["at"] for r in api.requests)
    assert times, "no request reached the API"
    peak = _peak(times, WINDOW)
    assert peak <= RPM, f"peak {peak} in a {WINDOW}s window of the API: {[round(t - times[0], 2) for t in times]}"
    limiter_window = WINDOW + MARGIN
    busy = [t for t in times if t - times[0] < MEASURE * limiter_window]
    throughput = len(busy) / (RPM * MEASURE)
    assert throughput >= 0.9, f"{len(busy)} requests in {MEASURE} budget windows: {throughput:.0%} of the budget"
