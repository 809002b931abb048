"""The outbox's rules, on SQLite with the app's clock, against loopback Zendesk, events and Slack servers.

Each decision records its deliveries in its own transaction and publishes them only after the
commit; an attempt (``triage.outbox.send.attempt``, the ``deliveries`` task's body) claims the
delivery under a lease, runs the steps not yet done, and settles it: delivered, gone (404),
failed (401/403/409/422 at once, or ``writeback.max_attempts`` spent, announced as
``delivery.failed``) or pending again after a backoff that honours Retry-After. A ticket's
write-backs apply in order; the sweep recovers lost messages; a person can retry.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.factories import ManualClock, RecordingPublisher, build_app, receive_from, recording, run_deliveries, submit
from tests.factories import finish_with_rules as route
from tests.fakehelpdesks import FakeEventsReceiver, FakeSlack, FakeZendesk
from tests.harness import Stack
from tests.writeback_cases import AGENT_TAGS, ZENDESK, Endpoint, config_file
from triage.api.app import create_app
from triage.app import App
from triage.errors import ConflictError, NotFoundError
from triage.outbox.outbox import ORDER_WAIT_SECONDS, DeliveryLease, LeaseLostError, Wait
from triage.settings import EVENT_TYPES
from triage.states.deliveries import DeliveryKind, DeliveryStatus
from triage.states.tickets import EventKind
from triage.store.models import Delivery, Ticket
from triage.store.queries import ticket_detail
from triage.tickets import lifecycle
from triage.worker import scheduled

ZENDESK_ID, ACCOUNT = ZENDESK.ticket_id, ZENDESK.account_id
P1_TEXT = "My watch is broken, urgent please"        # the rules: device_fault, high -> hardware-escalation, P1
P2_TEXT = "My router is broken"                       # device_fault, normal -> hardware-support, P2
ESCALATION_TAGS = ["triage-hw", "triage_hardware-escalation", "triage_p1"]
SUPPORT_TAGS = ["triage_hardware-support", "triage_p2"]
SUPPORT_FIELDS = {"problem_type": "device_fault", "device_model": None, "urgent_level": "normal",
                  "user_requirements": []}
TOKEN = "zd-secret-token-1"


@dataclass
class Box:
    app: App
    clock: ManualClock
    published: RecordingPublisher
    zendesk: FakeZendesk
    receiver: FakeEventsReceiver
    slack: FakeSlack

    def rows(self, ticket_id: int | None = None) -> list[Delivery]:
        with self.app.sessions() as session:
            query = select(Delivery).order_by(Delivery.created_at, Delivery.event_id, Delivery.kind)
            if ticket_id is not None:
                query = query.where(Delivery.ticket_id == ticket_id)
            return list(session.scalars(query))

    def row(self, delivery_id: str) -> Delivery:
        with self.app.sessions() as session:
            return session.get_one(Delivery, delivery_id)

    def writebacks(self, ticket_id: int) -> list[Delivery]:
        return [row for row in self.rows(ticket_id) if row.kind == DeliveryKind.WRITEBACK]

    def attempt(self, delivery_id: str) -> str | Wait:
        from triage.outbox import send

        return send.attempt(self.app.outbox, self.app.senders, self.app.clock, delivery_id)

    def run(self) -> dict[str, str | Wait]:
        return run_deliveries(self.app, self.published)

    @property
    def tags(self) -> list[str]:
        return sorted(self.zendesk.tickets[ZENDESK_ID].tags)

    @property
    def ticket(self) -> Any:
        return self.zendesk.tickets[ZENDESK_ID]

    def correct(self, ticket_id: int, fields: dict[str, Any]) -> None:
        now = self.clock.now()
        lifecycle.correct(self.app.sessions, ticket_id, "alice", fields, self.app.schema, self.app.router, now,
                          outbox=self.app.outbox)


@pytest.fixture
def box(tmp_path: Path, migrated_sqlite_url: str) -> Iterator[Box]:
    with FakeZendesk(email="bot@acme.test", token=TOKEN) as zendesk, FakeSlack() as slack, \
            FakeEventsReceiver(Endpoint("", ()).secret) as receiver:
        config = config_file(tmp_path, ZENDESK.toml, endpoints=[Endpoint(receiver.url, EVENT_TYPES)])
        clock = ManualClock(datetime.now(UTC))  # the receiver checks signatures against the wall clock
        app = build_app(migrated_sqlite_url, clock=clock, TRIAGE_CONFIG=str(config),
                        TRIAGE_API_TOKENS="alice:alice-token-0123456789abcdefghijklm",
                        TRIAGE__ALERTS__WEBHOOK_URL=slack.webhook_url, TRIAGE__RETRY__BACKOFF_BASE_SECONDS="2",
                        TRIAGE__RETRY__BACKOFF_MAX_SECONDS="4", TRIAGE__WRITEBACK__MAX_ATTEMPTS="3",
                        **ZENDESK.env(zendesk.base_url))
        published = recording(app)
        zendesk.ticket(ZENDESK_ID, tags=list(AGENT_TAGS))
        try:
            yield Box(app, clock, published, zendesk, receiver, slack)
        finally:
            app.close()


def _from_zendesk(box: Box, text: str = P1_TEXT, message: str = "m1") -> int:
    return receive_from(box.app, "zendesk", ZENDESK_ID, ACCOUNT, text, message)


def _events(box: Box) -> list[dict[str, Any]]:
    return [json.loads(received.body) for received in box.receiver.received]


# ---- what a decision records, in its transaction, published after the commit -------------------------

def test_a_routed_ticket_records_its_writeback_event_and_p1_alert_published_after_the_commit(box: Box) -> None:
    ticket_id = _from_zendesk(box)
    assert box.rows() == [] and box.published.deliveries == []
    route(box.app, ticket_id)
    rows = box.rows(ticket_id)
    endpoint = f"events endpoint 127.0.0.1:{urlsplit(box.receiver.url).port}"
    assert sorted((row.kind, row.target_name, row.topic) for row in rows) == [
        ("alert", "alerts webhook", "p1"), ("event", endpoint, "ticket.routed"), ("writeback", "zendesk", "routed")]
    assert sorted(box.published.deliveries) == sorted(row.id for row in rows)
    assert {row.status for row in rows} == {DeliveryStatus.PENDING}
    assert all(box.receiver.url not in json.dumps(row.payload) for row in rows)  # the URL is not stored

    assert set(box.run().values()) == {DeliveryStatus.DELIVERED}
    assert (box.ticket.group, box.ticket.priority) == ZENDESK.escalation_p1
    assert box.tags == sorted(AGENT_TAGS + ESCALATION_TAGS)
    [note] = box.ticket.notes
    [writeback] = [row for row in rows if row.kind == DeliveryKind.WRITEBACK]
    assert note.private and "hardware-escalation (P1)" in note.body and f"triage delivery {writeback.id}" in note.body
    [event] = _events(box)
    assert event["type"] == "ticket.routed" and event["data"]["ticket"]["id"] == ticket_id
    assert event["data"]["ticket"]["route"] == "hardware-escalation"
    [alert] = box.slack.messages
    assert alert.startswith(f"P1 ticket {ticket_id} on hardware-escalation: device_fault, urgency high")


def test_a_decision_that_does_not_commit_records_and_publishes_nothing(box: Box) -> None:
    ticket_id = _from_zendesk(box, P2_TEXT)
    route(box.app, ticket_id)
    lifecycle.resolve(box.app.sessions, ticket_id, "alice", box.clock.now(), outbox=box.app.outbox)
    box.run()
    before = box.rows()
    with pytest.raises(RuntimeError), box.app.sessions.begin() as session:  # noqa: PT012
        ticket = session.get_one(Ticket, ticket_id)
        # reopens: ticket.reopened recorded...
        assert lifecycle.append_message(session, ticket, box.clock.now(), outbox=box.app.outbox)
        raise RuntimeError("...and then the transaction fails")
    assert [row.id for row in box.rows()] == [row.id for row in before]
    assert box.published.deliveries == []


def test_a_submission_gets_events_but_no_writeback_and_a_p2_no_alert(box: Box) -> None:
    ticket_id = submit(box.app, "S-1", P2_TEXT)
    route(box.app, ticket_id)
    assert [(row.kind, row.topic) for row in box.rows(ticket_id)] == [("event", "ticket.routed")]


def test_a_platform_with_writeback_off_gets_no_writeback(box: Box) -> None:
    ticket_id = receive_from(box.app, "intercom", "147", "a86dr8yl", P2_TEXT)
    route(box.app, ticket_id)
    assert [row.kind for row in box.rows(ticket_id)] == ["event"]


def test_every_audited_decision_with_an_event_type_sends_it(box: Box) -> None:
    ticket_id = _from_zendesk(box, P2_TEXT)
    route(box.app, ticket_id)
    lifecycle.assign(box.app.sessions, ticket_id, "alice", box.clock.now(), outbox=box.app.outbox)
    box.correct(ticket_id, {**SUPPORT_FIELDS, "urgent_level": "low"})
    lifecycle.resolve(box.app.sessions, ticket_id, "alice", box.clock.now(), outbox=box.app.outbox)
    _from_zendesk(box, "It broke again", message="m2")  # reopens
    box.run()
    assert [event["type"] for event in _events(box)] == [
        "ticket.routed", "ticket.claimed", "ticket.corrected", "ticket.resolved", "ticket.reopened"]
    assert len({received.headers["webhook-id"] for received in box.receiver.received}) == 5
    assert box.receiver.rejected == 0


# ---- write-back: corrections, resolves, the order of a ticket's write-backs -------------------------------

def test_a_correction_moves_the_ticket_and_removes_only_triage_old_tags(box: Box) -> None:
    ticket_id = _from_zendesk(box)
    route(box.app, ticket_id)
    box.run()
    box.ticket.tags.append("escalated-by-agent")
    box.correct(ticket_id, SUPPORT_FIELDS)
    box.run()
    assert (box.ticket.group, box.ticket.priority) == ZENDESK.support_p2
    assert box.tags == sorted([*AGENT_TAGS, "escalated-by-agent", *SUPPORT_TAGS])
    assert [note.body.splitlines()[0] for note in box.ticket.notes] == [
        "triage routed this ticket to hardware-escalation (P1).", "triage routed this ticket to hardware-support (P2)."]


def test_a_resolve_tags_the_ticket_and_leaves_the_agents_group_and_a_reopen_takes_the_tag_off(box: Box) -> None:
    ticket_id = _from_zendesk(box, P2_TEXT)
    route(box.app, ticket_id)
    box.run()
    box.ticket.group = 777  # an agent moved it on Zendesk meanwhile
    lifecycle.resolve(box.app.sessions, ticket_id, "alice", box.clock.now(), outbox=box.app.outbox)
    box.run()
    assert box.ticket.group == 777 and box.tags == sorted([*AGENT_TAGS, *SUPPORT_TAGS, "triage_resolved"])
    assert box.ticket.notes[-1].body.startswith("triage: this ticket was resolved (hardware-support, P2).")
    # the route's group and priority, its note, then the resolve's note only
    assert [sorted(c.body["ticket"]) for c in box.zendesk.calls("PUT", r"/35436$")] == [
        ["group_id", "priority"], ["comment"], ["comment"]]

    _from_zendesk(box, "It broke again", message="m2")
    route(box.app, ticket_id)
    box.run()
    assert box.tags == sorted([*AGENT_TAGS, *SUPPORT_TAGS])


def test_a_decision_that_changes_nothing_writes_nothing_back(box: Box) -> None:
    ticket_id = _from_zendesk(box, P2_TEXT)
    route(box.app, ticket_id)
    box.run()
    assert lifecycle.reextract(box.app.sessions, ticket_id, EventKind.REPROCESS, box.clock.now(), outbox=box.app.outbox)
    route(box.app, ticket_id)  # the same route and priority again
    assert len(box.writebacks(ticket_id)) == 1
    assert [row.topic for row in box.rows(ticket_id)].count("ticket.routed") == 2


def test_an_older_writeback_not_yet_run_is_superseded_by_the_newer(box: Box) -> None:
    ticket_id = _from_zendesk(box)
    route(box.app, ticket_id)
    box.correct(ticket_id, SUPPORT_FIELDS)
    older, newer = box.writebacks(ticket_id)
    assert box.attempt(older.id) == "superseded by a newer write-back of the ticket"
    assert box.attempt(newer.id) == DeliveryStatus.DELIVERED
    assert box.row(older.id).status == DeliveryStatus.SUPERSEDED
    assert (box.ticket.group, box.ticket.priority) == ZENDESK.support_p2
    assert box.tags == sorted([*AGENT_TAGS, *SUPPORT_TAGS]) and len(box.ticket.notes) == 1


def test_a_newer_writeback_waits_for_an_older_one_that_started_writing(box: Box) -> None:
    ticket_id = _from_zendesk(box)
    route(box.app, ticket_id)
    [older] = box.writebacks(ticket_id)
    box.zendesk.answer_next(500, method="PUT", path=r"/tags$")
    waited = box.attempt(older.id)
    assert isinstance(waited, Wait) and box.row(older.id).steps_done == ["ticket"]
    box.correct(ticket_id, SUPPORT_FIELDS)
    newer = box.writebacks(ticket_id)[1]
    blocked = box.attempt(newer.id)
    assert isinstance(blocked, Wait) and "an older write-back" in blocked.reason
    assert blocked.seconds == pytest.approx(waited.seconds, abs=0.01)  # until the older one's next attempt

    box.clock.advance(seconds=waited.seconds + 0.5)
    assert box.attempt(older.id) == DeliveryStatus.DELIVERED
    assert box.tags == sorted(AGENT_TAGS + ESCALATION_TAGS)
    assert box.attempt(newer.id) == DeliveryStatus.DELIVERED
    assert (box.ticket.group, box.ticket.priority) == ZENDESK.support_p2
    assert box.tags == sorted([*AGENT_TAGS, *SUPPORT_TAGS])


def test_a_newer_writeback_behind_one_a_worker_holds_polls_shortly(box: Box) -> None:
    ticket_id = _from_zendesk(box)
    route(box.app, ticket_id)
    [older] = box.writebacks(ticket_id)
    lease = box.app.outbox.lease(older.id, box.clock.now())
    assert isinstance(lease, DeliveryLease)
    box.app.outbox.step_done(lease, "ticket", box.clock.now())
    box.correct(ticket_id, SUPPORT_FIELDS)
    blocked = box.attempt(box.writebacks(ticket_id)[1].id)
    assert isinstance(blocked, Wait) and blocked.seconds == ORDER_WAIT_SECONDS < box.app.outbox.lease_seconds


def test_an_old_failed_writeback_retried_after_a_newer_one_is_superseded(box: Box) -> None:
    ticket_id = _from_zendesk(box)
    route(box.app, ticket_id)
    [older] = box.writebacks(ticket_id)
    box.zendesk.answer_next(422, message="Group is invalid")
    assert box.attempt(older.id) == DeliveryStatus.FAILED
    box.correct(ticket_id, SUPPORT_FIELDS)
    box.run()
    box.app.outbox.retry(box.clock.now(), [older.id])
    assert box.run()[older.id] == "superseded by a newer write-back of the ticket"
    assert (box.ticket.group, box.ticket.priority) == ZENDESK.support_p2


# ---- errors: retry with backoff and Retry-After, gone, failed at once, out of attempts ----------------------

def test_a_429_waits_for_retry_after_then_delivers(box: Box) -> None:
    ticket_id = _from_zendesk(box, P2_TEXT)
    route(box.app, ticket_id)
    [writeback] = box.writebacks(ticket_id)
    box.zendesk.answer_next(429, headers={"Retry-After": "7"})
    waited = box.attempt(writeback.id)
    assert isinstance(waited, Wait) and waited.seconds >= 7
    row = box.row(writeback.id)
    assert (row.status, row.attempts, row.last_status) == (DeliveryStatus.PENDING, 1, 429)
    assert row.next_attempt_at == box.clock.now() + timedelta(seconds=waited.seconds)
    early = box.attempt(writeback.id)  # a duplicate message, before it is due
    assert isinstance(early, Wait) and early.reason == "not due yet" and box.row(writeback.id).attempts == 1
    box.clock.advance(seconds=waited.seconds)
    assert box.attempt(writeback.id) == DeliveryStatus.DELIVERED
    assert box.row(writeback.id).attempts == 2 and (box.ticket.group, box.ticket.priority) == ZENDESK.support_p2


def test_a_404_ends_the_delivery_as_gone_without_retrying_or_alarming(box: Box) -> None:
    del box.zendesk.tickets[ZENDESK_ID]  # deleted on Zendesk
    ticket_id = _from_zendesk(box, P2_TEXT)
    route(box.app, ticket_id)
    [writeback] = box.writebacks(ticket_id)
    assert box.attempt(writeback.id) == DeliveryStatus.GONE
    row = box.row(writeback.id)
    assert (row.attempts, row.last_status, row.next_attempt_at) == (1, 404, None)
    assert not [r for r in box.rows() if r.topic == "delivery.failed"]


@pytest.mark.parametrize("status", [401, 403, 422])
def test_a_refusal_fails_at_once_with_the_platforms_words_and_no_token(box: Box, status: int,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    ticket_id = _from_zendesk(box, P2_TEXT)
    route(box.app, ticket_id)
    [writeback] = box.writebacks(ticket_id)
    box.zendesk.answer_next(status, message=f"Refused; you sent {TOKEN}")
    assert box.attempt(writeback.id) == DeliveryStatus.FAILED
    row = box.row(writeback.id)
    assert row.attempts == 1 and row.last_status == status
    assert "Refused; you sent <redacted>" in (row.last_error or "") and TOKEN not in (row.last_error or "")
    box.run()
    failed = [event for event in _events(box) if event["type"] == "delivery.failed"]
    assert [event["data"]["delivery"]["id"] for event in failed] == [writeback.id]
    assert failed[0]["data"]["delivery"]["status"] == "failed" and failed[0]["data"]["ticket"]["id"] == ticket_id
    assert TOKEN not in json.dumps(failed)
    assert "Refused; you sent <redacted>" in caplog.text
    for secret in (TOKEN, box.receiver.url, box.slack.webhook_url):
        assert secret not in caplog.text


def test_answers_nobody_can_classify_fail_after_max_attempts_with_the_last_error(box: Box) -> None:
    ticket_id = _from_zendesk(box, P2_TEXT)
    route(box.app, ticket_id)
    [event] = [row for row in box.rows(ticket_id) if row.kind == DeliveryKind.EVENT]
    box.receiver.answer_next(400, times=5, message="unknown payload")  # a receiver refusing it, forever
    for _ in range(2):
        waited = box.attempt(event.id)
        assert isinstance(waited, Wait) and 0 < waited.seconds <= 4  # the backoff, capped
        box.clock.advance(seconds=waited.seconds)
    assert box.attempt(event.id) == DeliveryStatus.FAILED
    row = box.row(event.id)
    host = f"events endpoint {urlsplit(box.receiver.url).hostname}"
    assert row.attempts == 3 and row.last_error == (
        f"gave up after 3 attempts whose answers could not be classified; the last: {host} event: 400 unknown payload")
    assert box.attempt(event.id) == "already failed"


def test_a_timeout_is_retried(box: Box) -> None:
    ticket_id = _from_zendesk(box, P2_TEXT)
    route(box.app, ticket_id)
    [writeback] = box.writebacks(ticket_id)
    box.zendesk.answer_late(0.6)  # the client times out after 0.3 s; the platform did the work anyway
    waited = box.attempt(writeback.id)
    assert isinstance(waited, Wait) and "no answer within 0.3 s" in (box.row(writeback.id).last_error or "")
    box.clock.advance(seconds=waited.seconds)
    assert box.attempt(writeback.id) == DeliveryStatus.DELIVERED
    assert len(box.ticket.notes) == 1


# ---- the lease, the sweep, a person's retry ----------------------------------------------------------------

def test_a_lost_lease_is_taken_over_and_the_old_holder_writes_nothing(box: Box) -> None:
    ticket_id = _from_zendesk(box, P2_TEXT)
    route(box.app, ticket_id)
    [writeback] = box.writebacks(ticket_id)
    first = box.app.outbox.lease(writeback.id, box.clock.now())
    assert isinstance(first, DeliveryLease) and first.attempt == 1 and not first.resumed
    assert box.app.outbox.lease(writeback.id, box.clock.now()).reason == "held by another worker"  # type: ignore[union-attr]
    box.clock.advance(seconds=box.app.outbox.lease_seconds + 1)
    second = box.app.outbox.lease(writeback.id, box.clock.now())
    assert isinstance(second, DeliveryLease) and second.attempt == 2 and second.resumed
    with pytest.raises(LeaseLostError):
        box.app.outbox.step_done(first, "ticket", box.clock.now())
    assert box.app.outbox.settle(first, box.clock.now()) == "lease lost"
    assert box.app.outbox.settle(second, box.clock.now()) == DeliveryStatus.DELIVERED


def test_the_sweep_republishes_deliveries_whose_message_was_lost_once_per_threshold(box: Box) -> None:
    ticket_id = _from_zendesk(box, P2_TEXT)
    route(box.app, ticket_id)
    ids = sorted(box.published.deliveries)
    box.published.deliveries.clear()  # the broker lost them
    assert scheduled.sweep(box.app, holder="t").deliveries == []
    box.clock.advance(seconds=box.app.settings.worker.stuck_after_seconds + 1)
    report = scheduled.sweep(box.app, holder="t")
    assert sorted(report.deliveries) == ids == sorted(box.published.deliveries)
    assert "2 deliveries re-published" in report.summary()
    box.published.deliveries.clear()
    box.clock.advance(seconds=box.app.settings.worker.sweep_interval_seconds)
    assert scheduled.sweep(box.app, holder="t").deliveries == []


def test_the_sweep_republishes_a_delivery_whose_worker_died(box: Box) -> None:
    ticket_id = _from_zendesk(box, P2_TEXT)
    route(box.app, ticket_id)
    [writeback] = box.writebacks(ticket_id)
    box.published.deliveries.clear()
    assert isinstance(box.app.outbox.lease(writeback.id, box.clock.now()), DeliveryLease)  # ...and the worker dies
    box.clock.advance(seconds=box.app.settings.worker.stuck_after_seconds + 1)
    assert writeback.id in scheduled.sweep(box.app, holder="t").deliveries
    assert box.run()[writeback.id] == DeliveryStatus.DELIVERED


def test_a_person_retries_failed_deliveries_with_a_fresh_budget(box: Box) -> None:
    ticket_id = _from_zendesk(box, P2_TEXT)
    route(box.app, ticket_id)
    [writeback] = box.writebacks(ticket_id)
    box.zendesk.answer_next(403, message="Forbidden")
    assert box.attempt(writeback.id) == DeliveryStatus.FAILED
    box.run()
    with pytest.raises(ConflictError, match="only failed, gone or skipped deliveries can be retried"):
        box.app.outbox.retry(box.clock.now(), [_delivered(box)])
    with pytest.raises(NotFoundError, match="no delivery dlv_nope"):
        box.app.outbox.retry(box.clock.now(), ["dlv_nope"])
    assert box.app.outbox.retry(box.clock.now(), all_failed=True) == [writeback.id]
    row = box.row(writeback.id)
    assert (row.status, row.attempts) == (DeliveryStatus.PENDING, 0)
    assert row.last_error == "zendesk ticket: 403 Error: Forbidden"
    assert box.run()[writeback.id] == DeliveryStatus.DELIVERED


def _delivered(box: Box) -> str:
    return next(row.id for row in box.rows() if row.status == DeliveryStatus.DELIVERED)


# ---- SLA breaches ------------------------------------------------------------------------------------------

def test_an_sla_breach_alerts_once_and_a_new_due_time_can_alert_again(box: Box) -> None:
    ticket_id = _from_zendesk(box)  # P1: 1 h
    route(box.app, ticket_id)
    box.run()
    assert scheduled.sla_alerts(box.app, holder="t") == "sla-alerts: 0 breaches alerted"
    box.clock.advance(hours=1, seconds=1)
    assert scheduled.sla_alerts(box.app, holder="t") == f"sla-alerts: 1 breaches alerted (tickets {ticket_id})"
    box.clock.advance(seconds=box.app.settings.alerts.sla_check_interval_seconds)
    assert scheduled.sla_alerts(box.app, holder="t") == "sla-alerts: 0 breaches alerted"
    box.run()
    assert box.slack.messages[-1].startswith(f"SLA breached: ticket {ticket_id} (P1, hardware-escalation) was due ")

    box.correct(ticket_id, SUPPORT_FIELDS)  # a new route: a new due time, 8 h after the customer wrote
    box.clock.advance(hours=8, seconds=1)
    assert box.app.outbox.raise_sla_alerts(box.clock.now()) == [ticket_id]
    lifecycle.resolve(box.app.sessions, ticket_id, "alice", box.clock.now(), outbox=box.app.outbox)
    box.clock.advance(hours=100)
    assert box.app.outbox.raise_sla_alerts(box.clock.now()) == []  # resolved: not a breach


def test_without_an_alerts_webhook_nothing_alerts(migrated_sqlite_url: str) -> None:
    clock = ManualClock()
    app = build_app(migrated_sqlite_url, clock=clock)
    published = recording(app)
    ticket_id = submit(app, "S-1", P1_TEXT)
    route(app, ticket_id)
    clock.advance(hours=2)
    assert scheduled.sla_alerts(app, holder="t") == "sla-alerts: alerts off"
    assert published.deliveries == []  # and no events endpoints either: nothing at all


# ---- what people see -----------------------------------------------------------------------------------------

def test_the_ticket_detail_lists_its_deliveries_without_payloads(box: Box) -> None:
    ticket_id = _from_zendesk(box)
    route(box.app, ticket_id)
    box.run()
    detail = ticket_detail(box.app.sessions, ticket_id)
    assert detail is not None
    shown = detail["deliveries"]
    assert sorted((d["kind"], d["topic"], d["status"]) for d in shown) == [
        ("alert", "p1", "delivered"), ("event", "ticket.routed", "delivered"), ("writeback", "routed", "delivered")]
    assert set(shown[0]) == {"id", "ticket_id", "kind", "target", "topic", "status", "attempts", "steps_done",
                             "last_error", "last_status", "next_attempt_at", "created_at", "updated_at", "finished_at"}
    writeback = next(d for d in shown if d["kind"] == "writeback")
    assert writeback["steps_done"] == ["ticket", "tags", "note"]
    assert box.slack.webhook_url not in json.dumps(detail) and box.receiver.url not in json.dumps(detail)


def _failed(box: Box) -> tuple[int, str]:
    """A ticket whose write-back Zendesk refused (403, echoing our token); its id and the delivery's."""
    ticket_id = _from_zendesk(box, P2_TEXT)
    route(box.app, ticket_id)
    [writeback] = box.writebacks(ticket_id)
    box.zendesk.answer_next(403, message=f"token {TOKEN} may not do that")
    box.run()
    return ticket_id, writeback.id


def test_get_deliveries_lists_failed_ones_typed_paged_and_without_secrets(box: Box) -> None:
    ticket_id, failed_id = _failed(box)
    alice = {"Authorization": "Bearer alice-token-0123456789abcdefghijklm"}
    with TestClient(create_app(box.app, publish=lambda ticket: None)) as client:
        assert client.get("/deliveries?status=failed").status_code == 401
        page = client.get("/deliveries?status=failed", headers=alice).json()
        assert [item["id"] for item in page["items"]] == [failed_id] and page["next_cursor"] is None
        [item] = page["items"]
        assert (item["kind"], item["target"], item["topic"], item["status"], item["attempts"], item["last_status"]) == (
            "writeback", "zendesk", "routed", "failed", 1, 403)
        assert item["last_error"] == "zendesk ticket: 403 Error: token <redacted> may not do that"
        assert client.get("/deliveries?status=lost", headers=alice).status_code == 422
        assert client.get("/deliveries?cursor=nope", headers=alice).status_code == 400

        seen, cursor = [], None
        while True:
            params: dict[str, Any] = {"limit": 1} | ({"cursor": cursor} if cursor else {})
            answer = client.get("/deliveries", headers=alice, params=params)
            assert answer.status_code == 200
            seen += [item["id"] for item in answer.json()["items"]]
            cursor = answer.json()["next_cursor"]
            if cursor is None:
                break
        assert sorted(seen) == sorted(row.id for row in box.rows()) and len(seen) == len(set(seen)) == 3
        mine = client.get(f"/deliveries?ticket_id={ticket_id}&status=delivered", headers=alice).json()["items"]
        assert sorted(item["topic"] for item in mine) == ["delivery.failed", "ticket.routed"]
        everything = "".join(client.get(path, headers=alice).text for path in ("/deliveries", f"/tickets/{ticket_id}"))
        for secret in (TOKEN, box.receiver.url, box.slack.webhook_url):
            assert secret not in everything
        spec = client.get("/openapi.json").json()
        parameters = {p["name"]: p for p in spec["paths"]["/deliveries"]["get"]["parameters"]}
        assert "superseded" in json.dumps(spec["components"]["schemas"]) and "status" in parameters


def test_triage_deliveries_lists_and_retries(box: Box, tmp_path: Path) -> None:
    _, failed_id = _failed(box)
    stack = Stack(str(box.app.settings.database_url), "memory://", None)
    listed = stack.cli("deliveries", "--failed", "--json")
    assert listed.returncode == 0, listed.stderr
    [line] = listed.stdout.splitlines()
    assert json.loads(line)["id"] == failed_id and json.loads(line)["last_status"] == 403
    table = stack.cli("deliveries")
    assert table.returncode == 0 and table.stdout.splitlines()[0].split() == [
        "id", "ticket_id", "kind", "target", "topic", "status", "attempts", "next_attempt_at", "last_error"]
    assert len(table.stdout.splitlines()) == 1 + 3 and TOKEN not in table.stdout
    refused = stack.cli("deliveries", "--retry", _delivered(box))
    assert refused.returncode == 1 and "only failed, gone or skipped deliveries can be retried" in refused.stderr
    retried = stack.cli("deliveries", "--retry", failed_id)
    assert retried.returncode == 0 and retried.stdout.strip() == f"retried 1 deliveries: {failed_id}"
    assert box.row(failed_id).status == DeliveryStatus.PENDING
    assert stack.cli("deliveries", "--retry-all").stdout.strip() == "retried 0 deliveries"
    stack.close()


def test_deliveries_run_on_their_own_queue_and_beat_checks_sla_breaches(box: Box) -> None:
    from triage.app.queues import DELIVER_TASK, DELIVERIES_QUEUE, SLA_ALERTS_TASK
    from triage.worker.tasks import celery_for

    celery = celery_for(box.app)
    assert celery.conf.task_routes == {DELIVER_TASK: {"queue": DELIVERIES_QUEUE}} and DELIVER_TASK in celery.tasks
    assert {queue.name for queue in celery.conf.task_queues} == {"triage", "fallback", "deliveries"}
    assert celery.conf.beat_schedule["sla-alerts"] == {"task": SLA_ALERTS_TASK, "schedule": 60}
