"""Retention: `triage purge` and the retention job, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tests.factories import ManualClock
from tests.harness import Stack
from triage.conversation import Conversation as ConversationValue
from triage.intake.receive import submit
from triage.settings import SettingsError, load_settings
from triage.states.tickets import Status
from triage.store.db import make_engine, make_sessionmaker
from triage.store.models import Attempt, Conversation, Delivery, Event, IntakeKey, Ticket
from triage.store.purge import PurgeCounts, PurgeRecord, purge_before
from triage.worker.retention import RETENTION_ACTOR, purge_expired

NOW = datetime(2026, 6, 1, tzinfo=UTC)
CUTOFF = NOW - timedelta(days=30)
OLD, RECENT = CUTOFF - timedelta(days=5), CUTOFF + timedelta(days=5)


@pytest.fixture
def sessions(migrated_database_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(migrated_database_url)
    yield make_sessionmaker(engine)
    engine.dispose()


def _stored(sessions: sessionmaker[Session], key: str, received: datetime, status: str = Status.ROUTED,
            updated: datetime | None = None) -> int:
    """A conversation with its ticket, two attempts, an audit event with its outbox delivery and an intake key;
    returns its id."""
    text = ConversationValue.from_text(f"alice@example.com {key}")
    outcome = submit(sessions, "shop", key, text, received)
    with sessions.begin() as session:
        ticket = session.get_one(Ticket, outcome.ticket_id)
        ticket.status, ticket.updated_at = status, updated or received
        ticket.conversation.received_at = received
        session.add_all([Attempt(ticket_id=ticket.id, run=1, n=n, model="m", outcome="valid") for n in (1, 2)])
        event = Event(ticket_id=ticket.id, actor="alice", kind="claimed")
        session.add(event)
        session.flush()
        session.add(Delivery(id=f"dlv_{key}", ticket_id=ticket.id, event_id=event.id, kind="event", target="endpoint:1",
                             target_name="events endpoint hooks.example.com", topic="ticket.claimed",
                             payload={"body": "{}"}, status="delivered", created_at=received, updated_at=received))
        session.add(IntakeKey(source="shop", key=f"delivery-{key}", conversation_id=ticket.conversation_id))
        return ticket.conversation_id


def _left(sessions: sessionmaker[Session]) -> dict[str, int]:
    with sessions() as session:
        return {model.__tablename__: session.scalar(select(func.count()).select_from(model)) or 0
                for model in (Conversation, Ticket, Attempt, Event, Delivery, IntakeKey)}


def _external_ids(sessions: sessionmaker[Session]) -> set[str]:
    with sessions() as session:
        return set(session.scalars(select(Conversation.external_id)))


def test_old_finished_conversations_go_with_everything_hanging_off_them(sessions: sessionmaker[Session]) -> None:
    for key, status in (("old-routed", Status.ROUTED), ("old-review", Status.NEEDS_REVIEW),
                        ("old-corrected", Status.CORRECTED)):
        _stored(sessions, key, OLD, status)
    _stored(sessions, "old-queued", OLD, Status.QUEUED)  # still in the pipeline
    _stored(sessions, "old-touched", OLD, Status.CORRECTED, updated=RECENT)  # a person changed it since the cutoff
    _stored(sessions, "recent", RECENT)

    report = purge_before(sessions, CUTOFF, actor="cli", clock=ManualClock(NOW))

    assert report.counts == PurgeCounts(conversations=3, tickets=3, attempts=6, events=3, intake_keys=3, deliveries=3)
    assert report.kept == 2
    assert _external_ids(sessions) == {"old-queued", "old-touched", "recent"}
    assert _left(sessions) == {"conversations": 3, "tickets": 3, "attempts": 6, "events": 3, "deliveries": 3,
                               "intake_keys": 3}
    with sessions() as session:
        (record,) = session.scalars(select(PurgeRecord))
    assert (record.id, record.actor, record.before, record.started_at, record.finished_at) == (
        report.purge_id, "cli", CUTOFF, NOW, NOW)
    assert (record.conversations, record.tickets, record.attempts, record.events, record.intake_keys,
            record.deliveries) == (3, 3, 6, 3, 3, 3)
    assert report.summary() == (
        "purged 3 conversations (3 tickets, 6 attempts, 3 events, 3 deliveries, 3 intake keys) received before "
        f"{CUTOFF.isoformat()}; kept 2 received before then whose ticket is not finished or changed since; "
        f"logged as purge {report.purge_id}")


def test_dry_run_counts_and_deletes_nothing(sessions: sessionmaker[Session]) -> None:
    _stored(sessions, "old", OLD)
    _stored(sessions, "recent", RECENT)
    before = _left(sessions)
    report = purge_before(sessions, CUTOFF, actor="cli", dry_run=True, clock=ManualClock(NOW))
    assert report.counts == PurgeCounts(1, 1, 2, 1, 1, 1) and report.purge_id is None
    assert report.summary().startswith("would purge 1 conversations")
    assert _left(sessions) == before
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(PurgeRecord)) == 0


def test_batches_report_progress_and_add_up(sessions: sessionmaker[Session]) -> None:
    for n in range(5):
        _stored(sessions, f"old-{n}", OLD)
    seen: list[tuple[int, int]] = []
    report = purge_before(sessions, CUTOFF, actor="cli", batch_size=2, progress=lambda *p: seen.append(p),
                          clock=ManualClock(NOW))
    assert seen == [(2, 5), (4, 5), (5, 5)]
    assert report.counts == PurgeCounts(5, 5, 10, 5, 5, 5)
    again = purge_before(sessions, CUTOFF, actor="cli", clock=ManualClock(NOW))
    assert again.counts == PurgeCounts() and again.purge_id == (report.purge_id or 0) + 1


def test_a_naive_cutoff_is_refused(sessions: sessionmaker[Session]) -> None:
    with pytest.raises(ValueError, match="naive"):
        purge_before(sessions, datetime(2026, 1, 1), actor="cli", clock=ManualClock(NOW))


def test_the_retention_job_purges_past_retention_days_at_the_clock(sessions: sessionmaker[Session]) -> None:
    _stored(sessions, "old", OLD)
    _stored(sessions, "recent", RECENT)
    assert purge_expired(sessions, load_settings({}), clock=ManualClock(NOW)) is None  # retention off by default
    settings = load_settings({"TRIAGE__PRIVACY__RETENTION_DAYS": "30"})
    report = purge_expired(sessions, settings, clock=ManualClock(NOW))
    assert report is not None and report.before == CUTOFF and report.counts.conversations == 1
    assert _external_ids(sessions) == {"recent"}
    with sessions() as session:
        assert session.scalars(select(PurgeRecord.actor)).one() == RETENTION_ACTOR


def test_retention_days_must_be_positive() -> None:
    with pytest.raises(SettingsError, match="TRIAGE__PRIVACY__RETENTION_DAYS='0'"):
        load_settings({"TRIAGE__PRIVACY__RETENTION_DAYS": "0"})


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    stack = Stack(f"sqlite:///{tmp_path / 'triage.sqlite3'}", f"sqla+sqlite:///{tmp_path / 'broker.sqlite3'}",
                  api_base_url=None, extra_env={"TRIAGE_EXTRACTOR": "rules"})
    stack.migrate()
    yield stack
    stack.close()


def test_purge_command(stack: Stack) -> None:
    old = datetime.now(UTC) - timedelta(days=400)
    for n in range(3):
        _stored(stack.sessions, f"old-{n}", old)
    _stored(stack.sessions, "today", datetime.now(UTC))
    cutoff = (datetime.now(UTC) - timedelta(days=365)).date().isoformat()

    dry = stack.cli("purge", "--before", cutoff, "--dry-run")
    assert dry.returncode == 0 and dry.stdout.startswith("would purge 3 conversations (3 tickets, 6 attempts")
    assert len(_external_ids(stack.sessions)) == 4

    done = stack.cli("purge", "--before", cutoff)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("purged 3 conversations (3 tickets, 6 attempts, 3 events, 3 deliveries, "
                                  f"3 intake keys) received before {cutoff}T00:00:00+00:00")
    assert "logged as purge 1" in done.stdout
    assert "purge [##############################] 3/3" in done.stderr
    assert _external_ids(stack.sessions) == {"today"}


@pytest.mark.parametrize(("before", "message"), [
    ("last tuesday", "use an ISO date or time"),
    ("2026-01-01T00:00", "give a time zone"),
    ("2999-01-01", "is after now"),
])
def test_purge_command_refuses_a_bad_date(stack: Stack, before: str, message: str) -> None:
    result = stack.cli("purge", "--before", before)
    assert result.returncode == 2 and f"--before={before!r}" in result.stderr and message in result.stderr
