"""The ledger itself: it must see lost and duplicated work, or a green fault run proves nothing."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import text

from tests.faults.fleet import SOURCE, compute_ledger
from tests.harness import Stack
from triage.conversation import Conversation
from triage.intake.receive import submit
from triage.store.models import Attempt, Event, Ticket
from triage.store.models import Conversation as ConversationRow


class RequestLog:
    """A stand-in for the loopback API's request log: marker -> request times."""

    def __init__(self, times: dict[str, list[float]]) -> None:
        self.times = times
        self.requests: list[dict[str, Any]] = [{} for values in times.values() for _ in values]

    def times_by_marker(self, pattern: str | re.Pattern[str]) -> dict[str, list[float]]:
        return self.times


@pytest.fixture
def stack(fault_database_url: str) -> Iterator[Stack]:
    built = Stack(fault_database_url, "redis://127.0.0.1:1/0", None)
    built.migrate()
    yield built
    built.close()


def _finished(stack: Stack, external_id: str) -> int:
    """A routed ticket as a worker leaves it: its attempt and audit event in the finishing transaction."""
    with stack.sessions.begin() as session:
        conversation = ConversationRow(source=SOURCE, external_id=external_id, messages=[], text="broken router",
                                       content_hash="0" * 64)
        now = datetime.now(UTC)
        ticket = Ticket(conversation=conversation, status="routed", sla_started_at=now, finished_at=now)
        session.add_all([conversation, ticket])
        session.flush()
        session.add_all([Attempt(ticket_id=ticket.id, run=1, n=1, model="m", outcome="valid"),
                         Event(ticket=ticket, actor="worker", kind="routed")])
        return ticket.id


def test_ledger_counts_lost_and_duplicated_work(stack: Stack) -> None:
    ok, twice, late_attempt, late_request = (_finished(stack, f"FLT-0000{i}") for i in range(4))
    submit(stack.sessions, SOURCE, "FLT-00004", Conversation.from_text("left queued"), datetime.now(UTC))
    with stack.engine.begin() as conn:  # a second finish, and an extraction stored after the finish
        conn.execute(text("INSERT INTO events (ticket_id, actor, kind, created_at) VALUES (:t, 'worker', 'routed', "
                          "now())"), {"t": twice})
        conn.execute(text("INSERT INTO attempts (ticket_id, run, n, model, outcome, created_at) "
                          "VALUES (:t, 2, 1, 'm', 'valid', now() + interval '1 second')"), {"t": late_attempt})
    api = RequestLog({"[FLT-00000]": [time.time() - 60], "[FLT-00003]": [time.time() + 60]})
    ids = [f"FLT-0000{i}" for i in range(6)]  # FLT-00005 was never stored
    ledger = compute_ledger("self-test", stack, ids, 1.0, api, {})
    assert (ledger.submitted, ledger.routed, ledger.lost, ledger.duplicated) == (6, 4, 2, 3), ledger.line()
    assert ledger.details["unfinished"] == {"queued": 1} and ledger.details["missing"] == 1
    assert ledger.details["finished_twice"] == 1
    assert ledger.details["tickets_with_attempts_after_finish"] == 1
    assert ledger.details["tickets_with_api_requests_after_finish"] == 1
    samples = ledger.details["samples"]
    assert samples["finished_twice"] == [twice] and samples["after_finish"] == sorted([late_attempt, late_request])
    assert ok not in samples["after_finish"] + samples["finished_twice"]
    assert len(ledger.problems) == 4, ledger.problems
