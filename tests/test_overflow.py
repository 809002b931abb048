"""Model overflow (``extraction.overflow_models``): when the primary model has no rate budget left in this
window, a ticket goes to the next model with budget, each model on its own limiter budget; only when no
model has budget does it defer. The LLM is the loopback server, driven by the real ``openai`` client
through the Celery task as a worker runs it; the server sees which model each call named.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from celery.exceptions import Retry as CeleryRetry

from tests.factories import ManualClock, build_app, recording, submit
from tests.fakeapi import VALID_TICKET, FakeMiMo, error, ok
from triage.app import App
from triage.app.queues import EXTRACT_TASK
from triage.extraction.budget import ModelBudgets
from triage.extraction.model_chain import ModelChain
from triage.ratelimit import Headroom
from triage.ratelimit.window import Grant, headroom_us, prune, wait_us
from triage.settings import RateLimitSettings
from triage.store.queries import ticket_detail
from triage.worker.tasks import celery_for

PRIMARY, OVERFLOW = "mimo-v2-flash", "mimo-v2.5"
#: The route of the loopback server's default ticket (problem_type "other").
ROUTED = "general-inquiries"


def _app(database_url: str, api: FakeMiMo, **env: str) -> App:
    """One call per ticket unless a test asks for batches (these tests count calls per window)."""
    env = {"TRIAGE__EXTRACTION__BATCH_MODE": "never", **env}
    built = build_app(database_url, clock=ManualClock(), TRIAGE_EXTRACTOR="llm", MIMO_API_KEY="sk-test",
                      MIMO_BASE_URL=api.base_url, TRIAGE_MODEL=PRIMARY, TRIAGE__EXTRACTION__TIMEOUT_SECONDS="5",
                      TRIAGE__EXTRACTION__DEDUPE_WINDOW_SECONDS="0", **env)
    celery_for(built)
    recording(built)
    return built


def _run(app: App, ticket_id: int) -> str:
    """The extraction task as a worker runs it; ``deferred`` when it asked to be tried again later."""
    try:
        outcome: str = app.celery.tasks[EXTRACT_TASK](ticket_id)
    except CeleryRetry:
        return "deferred"
    return outcome


def _models_called(api: FakeMiMo, marker: str) -> list[str]:
    return [request["body"]["model"] for request in api.requests_for(marker)]


@pytest.fixture
def api() -> Iterator[FakeMiMo]:
    with FakeMiMo() as server:
        yield server


def test_the_primary_out_of_budget_sends_the_next_ticket_to_the_overflow_model(migrated_database_url: str,
                                                                               api: FakeMiMo) -> None:
    """The fleet's real limiter (the database's, as with a non-Redis broker), one request per model per window."""
    app = _app(migrated_database_url, api, TRIAGE__RATE_LIMIT__RPM="1",
               TRIAGE__EXTRACTION__OVERFLOW_MODELS=json.dumps([OVERFLOW]))
    try:
        tickets = [submit(app, f"O-{n}", f"My router is broken [overflow-{n}]") for n in range(3)]
        assert [_run(app, ticket_id) for ticket_id in tickets] == [ROUTED] * 2 + ["deferred"]
        assert _models_called(api, "[overflow-0]") == [PRIMARY]
        assert _models_called(api, "[overflow-1]") == [OVERFLOW]
        assert _models_called(api, "[overflow-2]") == [], "no model had budget: nothing was sent"
        first, second, third = (ticket_detail(app.sessions, ticket_id) for ticket_id in tickets)
        assert first is not None and second is not None and third is not None
        assert [a["model"] for a in second["attempts"]] == [OVERFLOW]
        assert second["ticket"]["model"] == OVERFLOW
        assert (third["ticket"]["status"], third["attempts"]) == ("queued", []), "deferred: no retry spent"
    finally:
        app.close()


def test_a_batch_call_takes_the_overflow_model_when_the_primary_has_no_budget(migrated_sqlite_url: str,
                                                                             api: FakeMiMo) -> None:
    app = _app(migrated_sqlite_url, api, TRIAGE__RATE_LIMIT__RPM="1", TRIAGE__EXTRACTION__BATCH_MODE="always",
               TRIAGE__EXTRACTION__BATCH_SIZE="2", TRIAGE__EXTRACTION__OVERFLOW_MODELS=json.dumps([OVERFLOW]))
    try:
        tickets = [submit(app, f"B-{n}", f"My router is broken [batch-{n}]") for n in range(4)]
        assert [_run(app, ticket_id) for ticket_id in tickets[::2]] == [ROUTED] * 2
        assert _models_called(api, "[batch-0]") == [PRIMARY] and _models_called(api, "[batch-1]") == [PRIMARY]
        assert _models_called(api, "[batch-2]") == [OVERFLOW] and _models_called(api, "[batch-3]") == [OVERFLOW]
        assert len(api.requests) == 2, "two batch calls of two, one per model"
    finally:
        app.close()


def test_without_overflow_models_the_ticket_defers_as_before(migrated_sqlite_url: str, api: FakeMiMo) -> None:
    app = _app(migrated_sqlite_url, api, TRIAGE__RATE_LIMIT__RPM="1")
    try:
        tickets = [submit(app, f"P-{n}", f"My router is broken [plain-{n}]") for n in range(2)]
        assert [_run(app, ticket_id) for ticket_id in tickets] == [ROUTED, "deferred"]
        assert _models_called(api, "[plain-0]") == [PRIMARY]
    finally:
        app.close()


def test_a_retired_primary_is_a_failure_not_an_overflow(migrated_sqlite_url: str, api: FakeMiMo) -> None:
    """Overflow is about budget: a 404 follows the failure chain as before (none here: the fallback queue)."""
    app = _app(migrated_sqlite_url, api, TRIAGE__EXTRACTION__OVERFLOW_MODELS=json.dumps([OVERFLOW]))
    try:
        api.script("[retired-1]", error(404, "no such model"))
        ticket_id = submit(app, "R-1", "My router is broken [retired-1]")
        assert _run(app, ticket_id) == "fallback"
        assert _models_called(api, "[retired-1]") == [PRIMARY], "asked once, not again through the overflow list"
    finally:
        app.close()


def test_a_model_in_both_lists_takes_over_on_failure_and_on_budget(migrated_sqlite_url: str, api: FakeMiMo) -> None:
    app = _app(migrated_sqlite_url, api, TRIAGE__RATE_LIMIT__RPM="1",
               TRIAGE__EXTRACTION__FALLBACK_MODELS=json.dumps([OVERFLOW]),
               TRIAGE__EXTRACTION__OVERFLOW_MODELS=json.dumps([OVERFLOW]))
    try:
        api.script("[both-1]", error(404, "no such model"), ok(VALID_TICKET))
        ticket_id = submit(app, "B-1", "My router is broken [both-1]")
        assert _run(app, ticket_id) == ROUTED
        assert _models_called(api, "[both-1]") == [PRIMARY, OVERFLOW]
    finally:
        app.close()


def test_a_retired_overflow_model_is_skipped_and_the_ticket_defers(migrated_sqlite_url: str, api: FakeMiMo) -> None:
    app = _app(migrated_sqlite_url, api, TRIAGE__RATE_LIMIT__RPM="1",
               TRIAGE__EXTRACTION__OVERFLOW_MODELS=json.dumps([OVERFLOW]))
    try:
        api.script("[gone-2]", error(404, "no such model"))
        tickets = [submit(app, f"G-{n}", f"My router is broken [gone-{n}]") for n in (1, 2, 3)]
        assert [_run(app, ticket_id) for ticket_id in tickets] == [ROUTED, "deferred", "deferred"]
        assert _models_called(api, "[gone-2]") == [OVERFLOW], "the primary had no budget; the 404 is not retried"
        assert _models_called(api, "[gone-3]") == [], "a retired overflow model is not asked"
    finally:
        app.close()


class ClockedLimiter:
    """The limiter's sliding-window arithmetic (:mod:`triage.ratelimit.window`, what both backends apply) on a
    clock the test moves, so windows pass without sleeping."""

    def __init__(self, settings: RateLimitSettings, window_seconds: float) -> None:
        self.settings = settings
        self.window_us = int(window_seconds * 1_000_000)
        self.now_us = 0
        self._grants: dict[str, list[Grant]] = {}
        self._lock = threading.Lock()

    def acquire(self, model: str, tokens: int) -> float:
        with self._lock:
            grants = prune(self._grants.get(model, []), self.now_us, self.window_us)
            wait = wait_us(grants, self.now_us, 0, self.settings.budget(model), self.window_us, tokens)
            if wait == 0:
                grants.append((self.now_us, tokens))
            self._grants[model] = grants
            return wait / 1_000_000

    def penalize(self, model: str, seconds: float) -> None:
        raise AssertionError(f"a 429 from {model}: the limiter let too much through")

    def peek(self, model: str) -> Headroom:
        with self._lock:
            grants = prune(self._grants.get(model, []), self.now_us, self.window_us)
            return Headroom.of(*headroom_us(grants, self.now_us, 0, self.settings.budget(model), self.window_us))

    def advance(self, seconds: float) -> None:
        self.now_us += int(seconds * 1_000_000)


RPM, WINDOW, BACKLOG = 4, 60.0, 16


def _drain(database_url: str, overflow: list[str], name: str) -> tuple[list[int], dict[str, Any]]:
    """Work a backlog window by window (every queued ticket tried once per window); tickets routed per window,
    and the loopback server's counters (it enforces the same per-model RPM and answers 429 beyond it)."""
    clock = [0.0]
    with FakeMiMo(rpm=RPM, window_seconds=WINDOW, clock=lambda: clock[0]) as api:
        app = _app(database_url, api, TRIAGE__RATE_LIMIT__RPM=str(RPM),
                   TRIAGE__EXTRACTION__OVERFLOW_MODELS=json.dumps(overflow))
        limiter = ClockedLimiter(app.settings.rate_limit, WINDOW)
        app.limiter = limiter
        try:
            waiting = [submit(app, f"{name}-{n}", f"My router is broken [{name}-{n}]") for n in range(BACKLOG)]
            per_window = []
            while waiting and len(per_window) < BACKLOG:
                outcomes = {ticket_id: _run(app, ticket_id) for ticket_id in waiting}
                waiting = [ticket_id for ticket_id, outcome in outcomes.items() if outcome == "deferred"]
                per_window.append(len(outcomes) - len(waiting))
                assert isinstance(app.clock, ManualClock)
                app.clock.advance(seconds=WINDOW + 1)
                limiter.advance(WINDOW + 1)
                clock[0] += WINDOW + 1
            return per_window, api.stats()
        finally:
            app.close()


def test_a_second_model_drains_a_backlog_twice_as_fast_with_no_429(migrated_database_url: str) -> None:
    alone, alone_stats = _drain(migrated_database_url, [], "alone")
    doubled, stats = _drain(migrated_database_url, [OVERFLOW], "doubled")
    assert alone == [RPM] * (BACKLOG // RPM), "one model: its RPM per window"
    assert doubled == [2 * RPM] * (BACKLOG // (2 * RPM)), "two models: twice that"
    assert len(alone) == 2 * len(doubled)
    assert alone_stats["rate_limited"] == stats["rate_limited"] == 0
    assert alone_stats["calls_by_model"] == {PRIMARY: BACKLOG}
    assert stats["calls_by_model"] == {PRIMARY: BACKLOG // 2, OVERFLOW: BACKLOG // 2}


def test_an_overflow_model_whose_circuit_is_open_is_not_asked() -> None:
    chain = ModelChain([PRIMARY], failures_to_open=1, open_seconds=60, retired_seconds=3600, clock=lambda: 0.0)
    asked: list[str] = []

    def acquire(model: str, tokens: int) -> float:
        asked.append(model)
        return 5.0 if model == PRIMARY else 0.0

    budgets = ModelBudgets(acquire, [OVERFLOW, "mimo-v2-pro"], chain.available)
    chain.failed(OVERFLOW, 404)
    assert budgets.take(PRIMARY, 100).model == "mimo-v2-pro"
    assert asked == [PRIMARY, "mimo-v2-pro"]


def test_a_model_in_both_lists_is_asked_once_and_the_chain_start_comes_first() -> None:
    budgets = ModelBudgets(lambda model, tokens: 7.0, [OVERFLOW, PRIMARY], lambda model: True)
    assert budgets.order(OVERFLOW) == [OVERFLOW, PRIMARY]
    assert budgets.take(PRIMARY, 1).wait == 7.0
