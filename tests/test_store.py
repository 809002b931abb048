"""Storage on SQLite and PostgreSQL: migrations, idempotent submit, claims and the stuck sweep."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from tests.factories import EPOCH, ManualClock, settings_for
from triage.conversation import Conversation
from triage.extraction.types import Attempt as AttemptRecord
from triage.extraction.types import ExtractionResult
from triage.intake.receive import Received, submit
from triage.outbox.outbox import Outbox
from triage.store.db import alembic_config, make_engine, make_sessionmaker
from triage.store.models import Ticket
from triage.store.queries import list_tickets
from triage.tickets import lifecycle
from triage.tickets.routing import RouteDecision

DECISION = RouteDecision("general-inquiries", "P3", datetime(2026, 1, 1, tzinfo=UTC), True)
RESULT = ExtractionResult("llm", {"problem_type": "consult", "device_model": None, "urgent_level": "low",
                                  "user_requirements": []},
                          [AttemptRecord(n=1, model="m", outcome="valid", raw_output="{}")], model="m")


@pytest.fixture
def sessions(migrated_database_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(migrated_database_url)
    yield make_sessionmaker(engine)
    engine.dispose()


@pytest.fixture
def outbox(migrated_database_url: str, sessions: sessionmaker[Session]) -> Outbox:
    """An outbox for these bare sessions (default settings: no write-back, event or alert to record)."""
    return Outbox(settings_for(migrated_database_url), sessions, lambda _delivery_id: None, lease_seconds=60)


def test_migrations_match_the_models(database_url: str) -> None:
    config = alembic_config(database_url)
    command.upgrade(config, "head")
    command.check(config)  # raises when autogenerate would produce a migration
    command.downgrade(config, "base")
    command.upgrade(config, "head")


NOW = EPOCH


def _submit(sessions: sessionmaker[Session], external_id: str = "A-1") -> Received:
    return submit(sessions, "shop", external_id, Conversation.from_text("Wi-Fi 断了"), NOW)


def test_same_source_and_id_returns_the_existing_ticket(sessions: sessionmaker[Session]) -> None:
    first = _submit(sessions)
    again = _submit(sessions)
    assert not first.duplicate and again.duplicate
    assert again.ticket_id == first.ticket_id and again.status == "queued"
    assert len(list_tickets(sessions).items) == 1


def test_concurrent_duplicate_submits_make_one_ticket(sessions: sessionmaker[Session]) -> None:
    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(lambda _: _submit(sessions, "RACE"), range(16)))
    assert len({o.ticket_id for o in outcomes}) == 1
    assert sum(not o.duplicate for o in outcomes) == 1


def test_a_claimed_ticket_cannot_be_claimed_again_until_its_lease_ends(sessions: sessionmaker[Session],
                                                                       outbox: Outbox) -> None:
    ticket_id = _submit(sessions).ticket_id
    clock = ManualClock(NOW)
    lease = lifecycle.lease(sessions, ticket_id, clock.now(), lease_seconds=60)
    assert lease is not None and lease.conversation.customer_text() == "Wi-Fi 断了"
    assert lifecycle.lease(sessions, ticket_id, clock.advance(seconds=59), lease_seconds=60) is None
    takeover = lifecycle.lease(sessions, ticket_id, clock.advance(seconds=2), lease_seconds=60)
    assert takeover is not None
    stale = lifecycle.finish(sessions, lease, RESULT, DECISION, clock.now(), outbox=outbox)
    assert not stale, "a stale claim must not write"
    assert lifecycle.finish(sessions, takeover, RESULT, DECISION, clock.now(), outbox=outbox)


def test_a_finished_ticket_is_never_extracted_again(sessions: sessionmaker[Session], outbox: Outbox) -> None:
    ticket_id = _submit(sessions).ticket_id
    lease = lifecycle.lease(sessions, ticket_id, NOW, lease_seconds=60)
    assert lease is not None and lifecycle.finish(sessions, lease, RESULT, DECISION, NOW, outbox=outbox)
    later = NOW + timedelta(hours=1)
    assert lifecycle.lease(sessions, ticket_id, later, lease_seconds=60) is None
    assert lifecycle.lease_fallback(sessions, ticket_id, later, lease_seconds=60) is None
    view = list_tickets(sessions).items[0]
    assert (view.status, view.route, view.attempts) == ("routed", "general-inquiries", 1)


def test_retry_release_keeps_the_attempts_for_the_next_claim(sessions: sessionmaker[Session]) -> None:
    ticket_id = _submit(sessions).ticket_id
    lease = lifecycle.lease(sessions, ticket_id, NOW, lease_seconds=60)
    assert lease is not None
    failed = AttemptRecord(n=1, model="m", outcome="api_error", status_code=503, error="overloaded")
    assert lifecycle.release_for_retry(sessions, lease, [failed], 5, NOW)
    again = lifecycle.lease(sessions, ticket_id, NOW + timedelta(seconds=5), lease_seconds=60)
    assert again is not None and [a.status_code for a in again.prior_attempts] == [503]


def test_stuck_tickets_are_handed_out_once_per_threshold(sessions: sessionmaker[Session], outbox: Outbox) -> None:
    stuck_id = _submit(sessions, "STUCK").ticket_id
    _submit(sessions, "FRESH")
    with sessions.begin() as session:
        session.execute(update(Ticket).where(Ticket.id == stuck_id).values(updated_at=NOW - timedelta(hours=1)))
    first = lifecycle.sweep(sessions, NOW, timedelta(minutes=10), max_requeues=3, poison_route=lambda start: DECISION,
                             outbox=outbox)
    assert [t.ticket_id for t in first.requeued] == [stuck_id] and first.poisoned == []
    again = lifecycle.sweep(sessions, NOW, timedelta(minutes=10), max_requeues=3, poison_route=lambda start: DECISION,
                             outbox=outbox)
    assert again.requeued == [] and again.poisoned == []
    with sessions() as session:
        assert session.get_one(Ticket, stuck_id).requeue_count == 1
