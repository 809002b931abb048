"""Scheduled jobs on SQLite and PostgreSQL: sweep and poison, job locks, retry-fallback, reprocess."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from tests.harness import REPO
from triage import jobs
from triage.components import Components
from triage.conversation import Conversation
from triage.settings import load_settings
from triage.store import service
from triage.store.db import upgrade
from triage.store.jobs import try_lock
from triage.store.models import JobLock, Ticket
from triage.store.review import correct


@pytest.fixture
def parts(database_url: str) -> Iterator[Components]:
    upgrade(database_url)
    built = Components.build(load_settings({
        "TRIAGE_CONFIG": str(REPO / "config" / "triage.toml"), "TRIAGE_DATABASE_URL": database_url,
        "TRIAGE_EXTRACTOR": "rules", "TRIAGE__JOBS__MAX_REQUEUES": "2",
        "TRIAGE__JOBS__RETRY_FALLBACK_AFTER_SECONDS": "60"}))
    yield built
    built.engine.dispose()


def _ticket(parts: Components, external_id: str, text: str = "My router is broken") -> int:
    return service.submit_conversation(parts.sessions, "shop", external_id, Conversation.from_text(text)).ticket_id


def _age(parts: Components, ticket_id: int, **values: object) -> None:
    with parts.sessions.begin() as session:
        session.execute(update(Ticket).where(Ticket.id == ticket_id).values(**values))


def _finish(parts: Components, ticket_id: int) -> None:
    claim = service.claim_for_extraction(parts.sessions, ticket_id, 60)
    assert claim is not None
    result = parts.rules.extract(claim.conversation)
    service.finish(parts.sessions, claim, result, parts.router.route(result.ticket or {}, service.utcnow()))


def _unlock_all(parts: Components) -> None:
    """Let the next job run start, as if the lock's slot had passed."""
    with parts.sessions.begin() as session:
        session.execute(update(JobLock).values(locked_until=None))


def test_sweep_requeues_then_poisons_a_ticket_that_keeps_coming_back(parts: Components) -> None:
    ticket_id = _ticket(parts, "P-1")
    published: list[int] = []
    hour_ago = datetime.now(UTC) - timedelta(hours=1)
    for expected_requeues in (1, 2):
        _age(parts, ticket_id, updated_at=hour_ago)
        _unlock_all(parts)
        report = jobs.sweep(parts, published.append, published.append, holder="t")
        assert report.requeued == [ticket_id]
        with parts.sessions() as session:
            assert session.get_one(Ticket, ticket_id).requeue_count == expected_requeues
    _age(parts, ticket_id, updated_at=hour_ago)
    _unlock_all(parts)
    report = jobs.sweep(parts, published.append, published.append, holder="t")
    assert report.poisoned == [ticket_id] and published == [ticket_id, ticket_id]
    with parts.sessions() as session:
        ticket = session.get_one(Ticket, ticket_id)
        assert (ticket.status, ticket.fallback_reason, ticket.route) == ("needs_review", "poison", "manual-review")


def test_a_job_runs_once_per_slot_even_with_two_beats(parts: Components) -> None:
    assert try_lock(parts.sessions, "sweep-stuck", "beat-a", hold_seconds=30)
    assert not try_lock(parts.sessions, "sweep-stuck", "beat-b", hold_seconds=30)
    report = jobs.sweep(parts, print, print, holder="beat-b")
    assert not report.ran and "skipped" in report.summary()
    assert try_lock(parts.sessions, "retry-fallback", "beat-b", hold_seconds=30), "locks are per job"


def test_retry_fallback_gives_one_fresh_pass_to_transient_failures_only(parts: Components) -> None:
    transient, invalid, recent = _ticket(parts, "T-1"), _ticket(parts, "T-2"), _ticket(parts, "T-3")
    long_ago = datetime.now(UTC) - timedelta(hours=1)
    _age(parts, transient, status="needs_review", fallback_reason="retries_exhausted", finished_at=long_ago)
    _age(parts, invalid, status="needs_review", fallback_reason="invalid_after_attempts", finished_at=long_ago)
    _age(parts, recent, status="needs_review", fallback_reason="api_error_503", finished_at=datetime.now(UTC))
    published: list[int] = []
    report = jobs.retry_fallback(parts, published.append, holder="t")
    assert report.requeued == [transient] and published == [transient]
    with parts.sessions() as session:
        ticket = session.get_one(Ticket, transient)
        assert (ticket.status, ticket.run, ticket.fallback_retried) == ("queued", 2, True)
    _age(parts, transient, status="needs_review", fallback_reason="retries_exhausted", finished_at=long_ago)
    _unlock_all(parts)
    assert jobs.retry_fallback(parts, published.append, holder="t").requeued == [], "only one fresh pass"


def test_reprocess_selects_by_version_and_never_touches_corrections(parts: Components) -> None:
    ids = [_ticket(parts, f"R-{i}") for i in range(3)]
    for ticket_id in ids:
        _finish(parts, ticket_id)
    _age(parts, ids[0], schema_version="old")
    _age(parts, ids[1], schema_version="old")
    with parts.sessions() as session:
        fields = dict(session.get_one(Ticket, ids[1]).fields or {})
    correct(parts.sessions, ids[1], "alice", fields, parts.router.route(fields, service.utcnow()))
    _age(parts, ids[1], schema_version="old")
    dry = jobs.reprocess(parts, jobs.Selection(schema_version="old"), print, dry_run=True)
    assert dry.selected == [ids[0]] and dry.requeued == []
    published: list[int] = []
    seen: list[tuple[int, int]] = []
    report = jobs.reprocess(parts, jobs.Selection(schema_version="old"), published.append,
                            progress=lambda done, total: seen.append((done, total)))
    assert report.requeued == published == [ids[0]] and seen == [(1, 1)]
    since = jobs.Selection(status="routed", since=datetime.now(UTC) - timedelta(hours=1))
    assert jobs.reprocess(parts, since, print, dry_run=True).selected == [ids[2]]
