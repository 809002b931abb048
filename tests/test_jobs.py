"""Scheduled jobs on SQLite and PostgreSQL: sweep and poison, job locks, retry-fallback, reprocess."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update

from tests.factories import (
    CONFIG_PATH,
    ManualClock,
    RecordingPublisher,
    build_app,
    finish_with_rules,
    recording,
    submit,
)
from triage.app import App
from triage.cli import main as cli
from triage.clock import SystemClock
from triage.store.job_locks import forced_name, try_lock
from triage.store.models import JobLock, Ticket
from triage.tickets import lifecycle
from triage.worker import scheduled


@pytest.fixture
def parts(migrated_database_url: str, clock: ManualClock) -> Iterator[App]:
    built = build_app(migrated_database_url, clock=clock, TRIAGE__JOBS__MAX_REQUEUES="2",
                      TRIAGE__JOBS__RETRY_FALLBACK_AFTER_SECONDS="60")
    yield built
    built.close()


@pytest.fixture
def published(parts: App) -> RecordingPublisher:
    return recording(parts)


def _ticket(parts: App, external_id: str, text: str = "My router is broken") -> int:
    return submit(parts, external_id, text)


def _age(parts: App, ticket_id: int, **values: object) -> None:
    with parts.sessions.begin() as session:
        session.execute(update(Ticket).where(Ticket.id == ticket_id).values(**values))


def _unlock_all(parts: App) -> None:
    """Let the next job run start, as if the lock's slot had passed."""
    with parts.sessions.begin() as session:
        session.execute(update(JobLock).values(locked_until=None))


def test_sweep_requeues_then_poisons_a_ticket_that_keeps_coming_back(parts: App, clock: ManualClock,
                                                                    published: RecordingPublisher) -> None:
    ticket_id = _ticket(parts, "P-1")
    for expected_requeues in (1, 2):
        clock.advance(hours=1)
        _unlock_all(parts)
        report = scheduled.sweep(parts, holder="t")
        assert report.requeued == [ticket_id]
        with parts.sessions() as session:
            assert session.get_one(Ticket, ticket_id).requeue_count == expected_requeues
    clock.advance(hours=1)
    _unlock_all(parts)
    report = scheduled.sweep(parts, holder="t")
    assert report.poisoned == [ticket_id] and published.extractions == [ticket_id, ticket_id]
    with parts.sessions() as session:
        ticket = session.get_one(Ticket, ticket_id)
        assert (ticket.status, ticket.fallback_reason, ticket.route) == ("needs_review", "poison", "manual-review")


def test_a_job_runs_once_per_slot_even_with_two_beats(parts: App, clock: ManualClock,
                                                      published: RecordingPublisher) -> None:
    assert try_lock(parts.sessions, "sweep-stuck", "beat-a", hold_seconds=30, now=clock.now())
    assert not try_lock(parts.sessions, "sweep-stuck", "beat-b", hold_seconds=30, now=clock.now())
    report = scheduled.sweep(parts, holder="beat-b")
    assert not report.ran and "skipped" in report.summary()
    assert try_lock(parts.sessions, "retry-fallback", "beat-b", hold_seconds=30, now=clock.now()), "locks are per job"
    assert try_lock(parts.sessions, "sweep-stuck", "beat-b", hold_seconds=30, now=clock.advance(seconds=31))


def test_retry_fallback_gives_one_fresh_pass_to_transient_failures_only(parts: App, clock: ManualClock,
                                                                        published: RecordingPublisher) -> None:
    transient, invalid, recent = _ticket(parts, "T-1"), _ticket(parts, "T-2"), _ticket(parts, "T-3")
    long_ago = clock.now() - timedelta(hours=1)
    _age(parts, transient, status="needs_review", fallback_reason="retries_exhausted", finished_at=long_ago)
    _age(parts, invalid, status="needs_review", fallback_reason="invalid_after_attempts", finished_at=long_ago)
    _age(parts, recent, status="needs_review", fallback_reason="api_error_503", finished_at=clock.now())
    report = scheduled.retry_fallback(parts, holder="t")
    assert report.requeued == [transient] and published.extractions == [transient]
    with parts.sessions() as session:
        ticket = session.get_one(Ticket, transient)
        assert (ticket.status, ticket.run, ticket.fallback_retried) == ("queued", 2, True)
    _age(parts, transient, status="needs_review", fallback_reason="retries_exhausted", finished_at=long_ago)
    _unlock_all(parts)
    assert scheduled.retry_fallback(parts, holder="t").requeued == [], "only one fresh pass"


def test_reprocess_selects_by_version_and_never_touches_corrections(parts: App, clock: ManualClock,
                                                                    published: RecordingPublisher) -> None:
    ids = [_ticket(parts, f"R-{i}") for i in range(3)]
    for ticket_id in ids:
        finish_with_rules(parts, ticket_id)
    _age(parts, ids[0], schema_version="old")
    _age(parts, ids[1], schema_version="old")
    with parts.sessions() as session:
        fields = dict(session.get_one(Ticket, ids[1]).fields or {})
    lifecycle.correct(parts.sessions, ids[1], "alice", fields, parts.schema, parts.router, clock.now(),
                      outbox=parts.outbox)
    _age(parts, ids[1], schema_version="old")
    dry = scheduled.reprocess(parts, scheduled.Selection(schema_version="old"), dry_run=True)
    assert dry.selected == [ids[0]] and dry.requeued == []
    seen: list[tuple[int, int]] = []
    report = scheduled.reprocess(parts, scheduled.Selection(schema_version="old"),
                            progress=lambda done, total: seen.append((done, total)))
    assert report.requeued == published.extractions == [ids[0]] and seen == [(1, 1)]
    since = scheduled.Selection(status="routed", since=clock.now() - timedelta(hours=1))
    assert scheduled.reprocess(parts, since, dry_run=True).selected == [ids[2]]


@pytest.mark.parametrize("job", [scheduled.sweep, scheduled.retry_fallback], ids=["sweep", "retry-fallback"])
def test_a_forced_run_goes_while_beat_holds_the_lock(parts: App, clock: ManualClock, published: RecordingPublisher,
                                                     job: Any) -> None:
    name = scheduled.SWEEP if job is scheduled.sweep else scheduled.RETRY_FALLBACK
    assert job(parts, holder="beat").ran  # beat's run: the lock is held for most of the interval
    skipped = job(parts, holder="cli")
    assert not skipped.ran and skipped.summary() == f"{name}: skipped, another run holds the lock"
    assert job(parts, holder="cli", force=True).ran
    assert job(parts, holder="cli", force=True).ran, "a forced run gives its lock back when it ends"
    assert not job(parts, holder="cli").ran, "forcing leaves beat's lock alone"


def test_two_forced_runs_never_overlap(parts: App, clock: ManualClock, published: RecordingPublisher) -> None:
    ticket_id = _ticket(parts, "F-1")
    clock.advance(hours=1)
    assert try_lock(parts.sessions, forced_name(scheduled.SWEEP), "cli-other:1234", hold_seconds=60, now=clock.now())
    report = scheduled.sweep(parts, holder="cli", force=True)
    assert not report.ran and report.summary() == "sweep-stuck: skipped, another forced run holds the lock"
    assert published.extractions == []
    clock.advance(seconds=61)  # that run died: its forced lock lapses after one interval
    assert scheduled.sweep(parts, holder="cli", force=True).requeued == [ticket_id]


def test_cli_force_flag_runs_the_job_and_the_hint_names_it(parts: App, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TRIAGE_CONFIG", str(CONFIG_PATH))
    monkeypatch.setenv("TRIAGE_DATABASE_URL", parts.settings.database_url)
    monkeypatch.setenv("TRIAGE_BROKER_URL", "memory://")
    monkeypatch.setenv("TRIAGE_EXTRACTOR", "rules")
    assert try_lock(parts.sessions, scheduled.SWEEP, "beat", hold_seconds=3600, now=SystemClock().now())
    assert cli.main(["sweep"]) == 0
    out, err = capsys.readouterr()
    assert "skipped, another run holds the lock" in out and "--force" in err
    assert cli.main(["sweep", "--force"]) == 0
    assert capsys.readouterr().out.startswith("sweep-stuck: 0 selected")
