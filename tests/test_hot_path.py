"""The hot path's cost in round trips: a worker's claim and each end of its run are one short transaction
of a fixed, small number of statements (however many attempts), and a dead pooled connection is
retried instead of pinged, on SQLite and PostgreSQL.

Statements are counted with a ``before_cursor_execute`` listener (:func:`tests.factories.count_statements`);
SQLite's ``BEGIN IMMEDIATE`` is left out of the counts, being the transaction itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.exc import DBAPIError

from tests.factories import ManualClock, build_app, count_statements, submit
from triage.app import App
from triage.conversation import Conversation
from triage.extraction.types import Attempt as AttemptRecord
from triage.extraction.types import ExtractionResult
from triage.intake.receive import receive
from triage.states.tickets import FallbackReason, Status
from triage.store.db import retry_disconnect, upgrade
from triage.store.models import Attempt, Event, IntakeKey, Ticket
from triage.tickets import lifecycle

LEASE = 60
FIELDS = {"problem_type": "device_fault", "device_model": "X1", "urgent_level": "high", "user_requirements": []}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 1, 5, 9, 0, tzinfo=UTC))


@pytest.fixture
def app(migrated_database_url: str, clock: ManualClock) -> Iterator[App]:
    built = build_app(migrated_database_url, clock=clock)
    yield built
    built.close()


def _sent(statements: list[str]) -> list[str]:
    """The statements of the work itself (without SQLite's BEGIN), by their first word."""
    words = [s.split(None, 1)[0].upper() for s in statements]
    return [word for word in words if word != "BEGIN"]


def _attempts(n: int) -> list[AttemptRecord]:
    return [AttemptRecord(k, "mimo-v2-flash", "invalid" if k < n else "valid", raw_output="{}", prompt_tokens=10,
                          completion_tokens=5, repairs=("fence",)) for k in range(1, n + 1)]


def _leased(app: App, external_id: str) -> lifecycle.Lease:
    lease = lifecycle.lease(app.sessions, submit(app, external_id), app.clock.now(), LEASE)
    assert lease is not None
    return lease


def test_a_claim_is_an_update_returning_and_one_read(app: App) -> None:
    ticket_id = submit(app, "claim")
    with count_statements(app.engine) as statements:
        lease = lifecycle.lease(app.sessions, ticket_id, app.clock.now(), LEASE)
    assert lease is not None and lease.conversation.customer_text() == "My router is broken"
    assert lease.prior_attempts == []
    assert _sent(statements) == ["UPDATE", "SELECT"], statements


def test_a_claim_brings_the_runs_earlier_attempts_in_the_same_read(app: App) -> None:
    lease = _leased(app, "retried")
    assert lifecycle.release_for_retry(app.sessions, lease, _attempts(2), 0, app.clock.now())
    with count_statements(app.engine) as statements:
        again = lifecycle.lease(app.sessions, lease.ticket_id, app.clock.now(), LEASE)
    assert again is not None and [a.n for a in again.prior_attempts] == [1, 2]
    assert again.prior_attempts[0].repairs == ("fence",) and again.prior_attempts[0].prompt_tokens == 10
    assert _sent(statements) == ["UPDATE", "SELECT"], statements


@pytest.mark.parametrize("attempts", [1, 3])
def test_finishing_is_four_statements_whatever_the_attempts(app: App, attempts: int) -> None:
    lease = _leased(app, f"finish-{attempts}")
    result = ExtractionResult("llm", FIELDS, _attempts(attempts), model="mimo-v2-flash")
    decision = app.router.route(FIELDS, lease.sla_started_at)
    with count_statements(app.engine) as statements:
        assert lifecycle.finish(app.sessions, lease, result, decision, app.clock.now(), outbox=app.outbox)
    assert _sent(statements) == ["SELECT", "INSERT", "UPDATE", "INSERT"], statements
    with app.sessions() as session:
        ticket = session.get_one(Ticket, lease.ticket_id)
        assert (ticket.status, ticket.route, ticket.lease_token, ticket.fields) == (
            Status.ROUTED, decision.route, None, FIELDS)
        assert "x1" in ticket.search_text.splitlines()
        assert len(session.scalars(select(Attempt).where(Attempt.ticket_id == lease.ticket_id)).all()) == attempts
        event = session.scalars(select(Event).where(Event.ticket_id == lease.ticket_id)).one()
        assert event.before == lifecycle.snapshot_of({**event.before, "sla_due_at": None})
        assert (event.before["status"], event.after["status"]) == ("processing", "routed")
        assert event.after == lifecycle.snapshot(ticket)


def test_sending_to_fallback_and_releasing_are_as_short(app: App) -> None:
    lease = _leased(app, "fallback")
    with count_statements(app.engine) as statements:
        assert lifecycle.send_to_fallback(app.sessions, lease, _attempts(2), FallbackReason.INVALID_AFTER_ATTEMPTS,
                                          "two bad answers", app.clock.now(), outbox=app.outbox)
    assert _sent(statements) == ["SELECT", "INSERT", "UPDATE", "INSERT"], statements
    retry = _leased(app, "retry")
    with count_statements(app.engine) as statements:
        assert lifecycle.release_for_retry(app.sessions, retry, _attempts(1), 30, app.clock.now())
    assert _sent(statements) == ["SELECT", "INSERT", "UPDATE"], statements
    with app.sessions() as session:
        ticket = session.get_one(Ticket, lease.ticket_id)
        assert (ticket.status, ticket.fallback_raw_output, ticket.lease_token) == (Status.FALLBACK, "{}", None)


def test_a_lost_claim_changes_nothing_in_one_statement(app: App) -> None:
    lease = _leased(app, "lost")
    lifecycle.reprocess(app.sessions, lease.ticket_id, "alice", app.clock.now(), outbox=app.outbox)
    with count_statements(app.engine) as statements:
        assert not lifecycle.finish(app.sessions, lease, ExtractionResult("llm", FIELDS, _attempts(1)),
                                    app.router.route(FIELDS, lease.sla_started_at), app.clock.now(), outbox=app.outbox)
    assert _sent(statements) == ["SELECT"], statements


def test_a_new_webhook_conversation_is_stored_in_one_statement_on_postgresql(app: App) -> None:
    """PostgreSQL: the redelivery check and the three inserts are one statement (data-modifying CTEs);
    SQLite, which has none, sends the four in its one local transaction."""
    with count_statements(app.engine) as statements:
        received = receive(app.sessions, "generic", "C-1", Conversation.from_text("My router is broken"),
                           ["delivery:d1", "message:C-1:m1"], app.clock.now(), outbox=app.outbox)
    assert received.enqueue and not received.duplicate
    one_statement = app.engine.dialect.name == "postgresql"
    assert _sent(statements) == (["WITH"] if one_statement else ["SELECT", "INSERT", "INSERT", "INSERT"]), statements
    with app.sessions() as session:
        ticket = session.get_one(Ticket, received.ticket_id)
        assert (ticket.status, ticket.run, ticket.requeue_count, ticket.trimmed, ticket.flags) == ("queued", 1, 0,
                                                                                                   False, {})
        assert ticket.conversation.messages[0]["text"] == "My router is broken" and "router" in ticket.search_text
        keys = session.scalars(select(IntakeKey.key).where(IntakeKey.conversation_id == ticket.conversation_id))
        assert sorted(keys) == ["delivery:d1", "message:C-1:m1"]
    again = receive(app.sessions, "generic", "C-1", Conversation.from_text("My router is broken"),
                    ["delivery:d1"], app.clock.now(), outbox=app.outbox)
    assert again.duplicate and again.ticket_id == received.ticket_id
    follow_up = receive(app.sessions, "generic", "C-1", Conversation.from_text("It still blinks red"),
                        ["delivery:d2", "message:C-1:m2"], app.clock.now(), outbox=app.outbox)
    assert follow_up.ticket_id == received.ticket_id and not follow_up.duplicate, "a new message: the append path"
    with app.sessions() as session:
        texts = [m["text"] for m in session.get_one(Ticket, received.ticket_id).conversation.messages]
        assert texts == ["My router is broken", "It still blinks red"]


def test_a_disconnect_is_retried_once_and_only_a_disconnect() -> None:
    calls: list[int] = []

    def dead_once() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise DBAPIError("SELECT 1", None, Exception("server closed the connection"), connection_invalidated=True)
        return "done"

    def refused() -> str:
        calls.append(1)
        raise DBAPIError("SELECT 1", None, Exception("syntax error"))

    assert retry_disconnect(dead_once)() == "done" and len(calls) == 2
    calls.clear()
    with pytest.raises(DBAPIError):
        retry_disconnect(refused)()
    assert len(calls) == 1


def test_a_pooled_connection_killed_by_the_server_is_retried_not_pinged(postgres_url: str, clock: ManualClock) -> None:
    """PostgreSQL ends every session of the database (as a restart does; a database of this test's own, so no
    other fixture's connection dies); the next claim meets the dead pooled connection, and its one retry on a
    fresh connection takes the ticket."""
    upgrade(postgres_url)
    app = build_app(postgres_url, clock=clock)
    try:
        ticket_id = submit(app, "killed")
        admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            ended = connection.exec_driver_sql(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()").scalar_one()
        admin.dispose()
        assert ended >= 1
        lease = lifecycle.lease(app.sessions, ticket_id, clock.now(), LEASE)
        assert lease is not None and lease.ticket_id == ticket_id
    finally:
        app.close()
