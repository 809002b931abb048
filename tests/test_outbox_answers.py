"""The helpdesks' answers on the outbox path, end to end: a decision records its delivery row, the
``deliveries`` task's body (:func:`triage.outbox.send.attempt`) sends it to the loopback platform answering
as the real one does, and the outbox settles it. Time moves on the app's clock (ManualClock): a Celery retry
comes back when its countdown is over, nothing sleeps.

- a 404 is gone only when the platform says so; a misaddressed one fails, is announced as
  ``delivery.failed`` and counts in ``triage_deliveries{status="failed"}``;
- transient answers (429 with Retry-After or X-RateLimit-Reset, 5xx, Zendesk's DatabaseConflict) are
  retried past ``writeback.max_attempts`` until ``writeback.give_up_after_hours``, for write-backs,
  events and alerts alike; a person's retry starts the deadline again;
- Zendesk: a group change lands on an assigned ticket and the note (even a later attempt's) names the agent;
  a closed ticket ends ``skipped``, listed everywhere statuses are;
- Chatwoot: an agent-bot token fails before anything is written;
- Freshdesk and Zammad: a note whose answer was lost is not posted again on a long ticket.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.factories import (
    ALICE,
    TOKENS_ENV,
    ManualClock,
    RecordingPublisher,
    build_app,
    parse_metrics,
    receive_from,
    recording,
    run_deliveries,
    sample,
    sign_in,
)
from tests.factories import finish_with_rules as route
from tests.fakehelpdesks import FakeChatwoot, FakeEventsReceiver, FakeHelpdesk, FakeIntercom, FakeSlack, Note
from tests.writeback_cases import (
    AGENT_TAGS,
    CASES,
    CHATWOOT,
    FRESHDESK,
    INTERCOM,
    ZAMMAD,
    ZENDESK,
    Case,
    Endpoint,
    config_file,
)
from triage.api.app import create_app
from triage.app import App
from triage.cli import main as cli
from triage.delivery.chatwoot import BOT_TOKEN
from triage.outbox.outbox import Wait
from triage.states.deliveries import DeliveryKind, DeliveryStatus
from triage.store.models import Delivery

P2_TEXT = "My router is broken"                    # the rules: hardware-support, P2 (no P1 alert)
P1_TEXT = "My watch is broken, urgent please"      # hardware-escalation, P1 (a P1 alert)
#: The settings under test: a small attempts budget and a short backoff, so that "more than max_attempts"
#: is a handful of attempts.
SHORT = {"TRIAGE__WRITEBACK__MAX_ATTEMPTS": "3", "TRIAGE__RETRY__BACKOFF_BASE_SECONDS": "2",
         "TRIAGE__RETRY__BACKOFF_MAX_SECONDS": "4"}
#: The settings' default backoff (2 s doubling to 300 s), with the same small attempts budget.
DEFAULT_BACKOFF = {"TRIAGE__WRITEBACK__MAX_ATTEMPTS": "3"}
#: A bound on the attempts a test drives, so a delivery that never settles fails the test instead of hanging.
MAX_ROUNDS = 400


@dataclass
class Desk:
    """One platform's write-back on the outbox: the app, its clock and publisher, the loopback platform,
    the events receiver (every event type) and the Slack webhook of the alerts."""

    case: Case
    app: App
    clock: ManualClock
    published: RecordingPublisher
    fake: Any
    receiver: FakeEventsReceiver
    slack: FakeSlack
    #: The environment the app was built from (``triage`` commands run in it).
    env: dict[str, str]

    def triage(self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> str:
        """``triage ARGS`` in this process, in the app's environment: its standard output (exit status 0)."""
        for name, value in self.env.items():
            monkeypatch.setenv(name, value)
        capsys.readouterr()
        assert cli.main(list(args)) == 0, capsys.readouterr().err
        return capsys.readouterr().out

    def decide(self, text: str = P2_TEXT) -> int:
        """A message from the platform's ticket, routed by the rules: the decision that records deliveries."""
        ticket_id = receive_from(self.app, self.case.platform, self.case.ticket_id, self.case.account_id, text)
        route(self.app, ticket_id)
        return ticket_id

    def rows(self, kind: str | None = None, topic: str | None = None) -> list[Delivery]:
        with self.app.sessions() as session:
            query = select(Delivery).order_by(Delivery.created_at, Delivery.id)
            if kind is not None:
                query = query.where(Delivery.kind == kind)
            if topic is not None:
                query = query.where(Delivery.topic == topic)
            return list(session.scalars(query))

    def writeback(self) -> Delivery:
        [row] = self.rows(DeliveryKind.WRITEBACK)
        return row

    def attempt_writeback(self) -> Any:
        """One attempt of every published delivery; the write-back's outcome."""
        return run_deliveries(self.app, self.published)[self.writeback().id]

    def settle(self, *, until: datetime | None = None, between: Callable[[], None] = lambda: None) -> dict[str, Any]:
        """Attempt every published delivery and bring each retry back once its countdown is over (as Celery
        would), until none is waiting or the clock would pass ``until``; ``between`` runs before each attempt
        that waited. The last outcome of each delivery."""
        outcomes: dict[str, Any] = {}
        waiting: list[tuple[datetime, str]] = []
        for _ in range(MAX_ROUNDS):
            for delivery_id, outcome in run_deliveries(self.app, self.published).items():
                outcomes[delivery_id] = outcome
                if isinstance(outcome, Wait):
                    waiting.append((self.clock.now() + timedelta(seconds=outcome.seconds), delivery_id))
            if not waiting:
                return outcomes
            waiting.sort()
            due, delivery_id = waiting.pop(0)
            if until is not None and due > until:
                return outcomes
            self.clock.current = max(self.clock.current, due)
            between()
            self.published.deliveries.append(delivery_id)
        raise AssertionError(f"deliveries still waiting after {MAX_ROUNDS} attempts: {waiting[:3]}")

    def events(self, event_type: str) -> list[dict[str, Any]]:
        found = [json.loads(received.body) for received in self.receiver.received]
        return [event for event in found if event["type"] == event_type]

    def metric(self, status: str) -> float | None:
        with TestClient(create_app(self.app, publish=lambda _: None)) as http:
            return sample(parse_metrics(http.get("/metrics").text), "triage_deliveries", status=status)


@contextmanager
def desk(case: Case, migrated_sqlite_url: str, tmp_path: Path, *, base_path: str = "",
         fake: FakeHelpdesk | None = None, start: datetime | None = None,
         events: tuple[str, ...] = ("ticket.routed", "delivery.failed"), **env: str) -> Iterator[Desk]:
    """``case`` written back through the outbox; ``base_path`` appended to its URL; the receiver takes
    ``events``; the clock starts at ``start`` (default: now: the receiver checks signatures against the
    wall clock)."""
    with fake or case.fake() as platform, FakeSlack() as slack, FakeEventsReceiver(Endpoint("", ()).secret) as rx:
        config = config_file(tmp_path, case.toml, endpoints=[Endpoint(rx.url, events)])
        clock = ManualClock(start or datetime.now(UTC))
        environment = {"TRIAGE_CONFIG": str(config), "TRIAGE_API_TOKENS": TOKENS_ENV,
                       "TRIAGE__ALERTS__WEBHOOK_URL": slack.webhook_url, **case.env(platform.base_url + base_path),
                       **env}
        app = build_app(migrated_sqlite_url, clock=clock, **environment)
        published = recording(app)
        environment |= {"TRIAGE_DATABASE_URL": migrated_sqlite_url, "TRIAGE_BROKER_URL": "memory://",
                        "TRIAGE_EXTRACTOR": "rules"}
        try:
            yield Desk(case, app, clock, published, platform, rx, slack, environment)
        finally:
            app.close()


# ---- 404: gone only when the platform says so -----------------------------------------------------------

#: Each platform's base URL with its API path doubled, and the setting its failure names.
MISADDRESSED = {"zendesk": ("/api/v2", "TRIAGE_WRITEBACK_ZENDESK_URL"),
                "intercom": ("/v2", "TRIAGE_WRITEBACK_INTERCOM_URL"),
                "chatwoot": ("/api/v1", "TRIAGE_WRITEBACK_CHATWOOT_URL"),
                "zammad": ("/api/v1", "TRIAGE_WRITEBACK_ZAMMAD_URL"),
                "freshdesk": ("/api/v2", "TRIAGE_WRITEBACK_FRESHDESK_URL")}


@pytest.mark.parametrize("case", CASES, ids=str)
def test_a_misaddressed_404_fails_is_announced_and_counted(case: Case, migrated_sqlite_url: str,
                                                           tmp_path: Path) -> None:
    base_path, setting = MISADDRESSED[case.platform]
    with desk(case, migrated_sqlite_url, tmp_path, base_path=base_path, **SHORT) as d:
        d.fake.ticket(case.ticket_id, tags=list(AGENT_TAGS))
        ticket_id = d.decide()
        d.settle()
        row = d.writeback()
        assert (row.status, row.attempts, row.last_status) == (DeliveryStatus.FAILED, 1, 404)
        assert f"check {setting}" in (row.last_error or "")
        [failed] = d.events("delivery.failed")
        assert failed["data"]["delivery"]["id"] == row.id and failed["data"]["ticket"]["id"] == ticket_id
        assert f"check {setting}" in failed["data"]["delivery"]["last_error"]
        assert d.metric("failed") == 1
        assert sorted(d.fake.tickets[case.ticket_id].tags) == sorted(AGENT_TAGS)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_a_ticket_the_platform_says_is_gone_ends_quietly(case: Case, migrated_sqlite_url: str,
                                                         tmp_path: Path) -> None:
    with desk(case, migrated_sqlite_url, tmp_path, **SHORT) as d:  # no ticket on the platform: deleted there
        d.decide()
        d.settle()
        row = d.writeback()
        assert (row.status, row.attempts, row.last_status) == (DeliveryStatus.GONE, 1, 404)
        assert d.events("delivery.failed") == [] and d.metric("failed") == 0 and d.metric("gone") == 1


@pytest.mark.parametrize(("admin", "teams", "named"), [
    ("992", None, "admin 992 does not: check TRIAGE_WRITEBACK_INTERCOM_ADMIN_ID"),
    ("991", {"5001"}, "team 5002 does not: check writeback.intercom.routes.hardware-support.team_id"),
], ids=["admin", "team"])
def test_a_wrong_intercom_admin_or_team_fails_naming_it(admin: str, teams: set[str] | None, named: str,
                                                        migrated_sqlite_url: str, tmp_path: Path) -> None:
    fake = FakeIntercom(token="ic-secret-token-1", admin_id="991", teams=teams)
    with desk(INTERCOM, migrated_sqlite_url, tmp_path, fake=fake, TRIAGE_WRITEBACK_INTERCOM_ADMIN_ID=admin,
              **SHORT) as d:
        d.fake.ticket(INTERCOM.ticket_id, tags=list(AGENT_TAGS))
        d.decide()
        d.settle()
        row = d.writeback()
        assert (row.status, row.last_status) == (DeliveryStatus.FAILED, 404) and named in (row.last_error or "")
        assert len(d.events("delivery.failed")) == 1 and d.metric("failed") == 1
        assert d.fake.tickets[INTERCOM.ticket_id].group is None


def test_a_chatwoot_account_that_does_not_exist_fails_naming_the_account(migrated_sqlite_url: str,
                                                                       tmp_path: Path) -> None:
    with desk(CHATWOOT, migrated_sqlite_url, tmp_path, TRIAGE_WRITEBACK_CHATWOOT_ACCOUNT_ID="7", **SHORT) as d:
        ticket_id = receive_from(d.app, "chatwoot", CHATWOOT.ticket_id, "7", P2_TEXT)  # an account Chatwoot lost
        route(d.app, ticket_id)
        d.settle()
        row = d.writeback()
        assert (row.status, row.last_status) == (DeliveryStatus.FAILED, 404)
        assert "check TRIAGE_WRITEBACK_CHATWOOT_ACCOUNT_ID (account 7 does not answer)" in (row.last_error or "")


# ---- transient answers: a deadline, not a count ------------------------------------------------------------

def test_connection_errors_and_timeouts_are_retried_past_max_attempts(migrated_sqlite_url: str,
                                                                     tmp_path: Path) -> None:
    with desk(ZENDESK, migrated_sqlite_url, tmp_path, events=("delivery.failed",), **SHORT) as d:
        d.fake.ticket(ZENDESK.ticket_id, tags=list(AGENT_TAGS))
        d.decide()
        with d.fake.down():
            for _ in range(4):
                waited = d.attempt_writeback()
                assert isinstance(waited, Wait) and "could not reach it" in (d.writeback().last_error or "")
                d.clock.advance(seconds=waited.seconds)
                d.published.deliveries.append(d.writeback().id)
        d.fake.answer_late(0.6, method="PUT")  # then one answer later than the client's timeout
        d.settle()
        row = d.writeback()
        assert (row.status, row.attempts, row.transient_attempts) == (DeliveryStatus.DELIVERED, 6, 5)

def test_more_consecutive_429s_than_max_attempts_still_deliver(migrated_sqlite_url: str, tmp_path: Path) -> None:
    with desk(ZENDESK, migrated_sqlite_url, tmp_path, **SHORT) as d:
        d.fake.ticket(ZENDESK.ticket_id, tags=list(AGENT_TAGS))
        d.fake.answer_next(429, method="PUT", times=7, headers={"Retry-After": "30"}, message="Rate limit exceeded")
        d.decide()
        started = d.clock.now()
        outcomes = d.settle()
        row = d.writeback()
        assert outcomes[row.id] == DeliveryStatus.DELIVERED
        assert (row.attempts, row.transient_attempts) == (8, 7) and row.attempts > d.app.settings.writeback.max_attempts
        assert d.clock.now() - started >= timedelta(seconds=7 * 30)  # every Retry-After honoured
        assert (d.fake.tickets["35436"].group, d.fake.tickets["35436"].priority) == ZENDESK.support_p2
        assert d.events("delivery.failed") == []


def test_intercoms_x_ratelimit_reset_is_waited_for(migrated_sqlite_url: str, tmp_path: Path) -> None:
    with desk(INTERCOM, migrated_sqlite_url, tmp_path, **SHORT) as d:
        d.fake.ticket(INTERCOM.ticket_id, tags=list(AGENT_TAGS))
        reset = int(d.clock.now().timestamp()) + 45
        d.fake.answer_next(429, times=4, headers={"X-RateLimit-Limit": "10000", "X-RateLimit-Remaining": "0",
                                                  "X-RateLimit-Reset": str(reset)})
        d.decide()
        first = d.attempt_writeback()
        assert isinstance(first, Wait) and first.seconds >= 44
        d.published.deliveries.append(d.writeback().id)
        d.clock.current = datetime.fromtimestamp(reset, UTC)
        d.settle()
        assert d.writeback().status == DeliveryStatus.DELIVERED and d.writeback().transient_attempts == 4


def test_a_zendesk_down_for_an_hour_loses_nothing_and_needs_no_one(migrated_sqlite_url: str, tmp_path: Path) -> None:
    with desk(ZENDESK, migrated_sqlite_url, tmp_path, **DEFAULT_BACKOFF) as d:
        d.fake.ticket(ZENDESK.ticket_id, tags=list(AGENT_TAGS))
        d.fake.answer_next(503, times=10_000, message="Service Unavailable")
        d.decide()
        back = d.clock.now() + timedelta(hours=1)

        def maybe_back() -> None:
            if d.clock.now() >= back:
                d.fake._script.clear()  # Zendesk answers again

        outcomes = d.settle(between=maybe_back)
        row = d.writeback()
        assert outcomes[row.id] == DeliveryStatus.DELIVERED and row.attempts > 3
        assert row.attempts - row.transient_attempts == 1  # only the last attempt spent the attempts budget
        assert d.clock.now() - back < timedelta(seconds=300)  # tried again within one backoff cap of the return
        assert sorted(d.fake.tickets["35436"].tags) == sorted([*AGENT_TAGS, "triage_hardware-support", "triage_p2"])
        assert d.events("delivery.failed") == [] and len(d.fake.tickets["35436"].notes) == 1


def test_the_deadline_fails_a_delivery_and_a_persons_retry_starts_it_again(migrated_sqlite_url: str,
                                                                         tmp_path: Path) -> None:
    half_hour = timedelta(minutes=30)
    # the clock starts half an hour behind the wall clock, so delivery.failed is signed about now
    with desk(ZENDESK, migrated_sqlite_url, tmp_path, start=datetime.now(UTC) - half_hour, events=("delivery.failed",),
              TRIAGE__WRITEBACK__GIVE_UP_AFTER_HOURS="0.5", **DEFAULT_BACKOFF) as d:
        d.fake.ticket(ZENDESK.ticket_id, tags=list(AGENT_TAGS))
        d.fake.answer_next(502, times=10_000, message="Bad Gateway")
        d.decide()
        created = d.clock.now()
        d.settle()
        row = d.writeback()
        assert row.status == DeliveryStatus.FAILED and created + half_hour <= row.finished_at < created + 2 * half_hour
        assert (row.last_error or "").startswith(f"gave up after 0.5 h of transient answers ({row.attempts} attempts)"
                                                 "; the last: zendesk ticket: 502 Error: Bad Gateway")
        assert row.attempts > 3 and d.metric("failed") == 1
        [failed] = d.events("delivery.failed")
        assert failed["data"]["delivery"]["id"] == row.id

        assert d.app.outbox.retry(d.clock.now(), [row.id]) == [row.id]
        retried = d.writeback()
        assert (retried.status, retried.attempts, retried.retried_at) == (DeliveryStatus.PENDING, 0, d.clock.now())
        d.clock.advance(minutes=20)  # a fresh half hour from the retry: still inside it
        d.fake._script.clear()
        d.settle()
        assert d.writeback().status == DeliveryStatus.DELIVERED


def test_zendesk_database_conflict_is_retried_not_failed(migrated_sqlite_url: str, tmp_path: Path) -> None:
    with desk(ZENDESK, migrated_sqlite_url, tmp_path, **SHORT) as d:
        d.fake.ticket(ZENDESK.ticket_id, tags=list(AGENT_TAGS))
        d.fake.answer_next(409, method="PUT", times=4, message="Database collision")
        d.decide()
        d.settle()
        row = d.writeback()
        assert (row.status, row.transient_attempts) == (DeliveryStatus.DELIVERED, 4)


def test_events_and_alerts_ride_out_an_outage_longer_than_max_attempts_too(migrated_sqlite_url: str,
                                                                           tmp_path: Path) -> None:
    with desk(ZENDESK, migrated_sqlite_url, tmp_path, **SHORT) as d:
        d.fake.ticket(ZENDESK.ticket_id, tags=list(AGENT_TAGS))
        d.slack.answer_next(503, times=5, message="service_unavailable")
        d.receiver.answer_next(429, times=5, headers={"Retry-After": "2"})
        d.decide(P1_TEXT)
        d.settle()
        statuses = {(row.kind, row.status, row.transient_attempts) for row in d.rows()}
        assert statuses == {("writeback", "delivered", 0), ("event", "delivered", 5), ("alert", "delivered", 5)}
        assert len(d.slack.messages) == 1 and [e["type"] for e in d.events("ticket.routed")] == ["ticket.routed"]


# ---- Zendesk: assigned and closed tickets --------------------------------------------------------------------

def test_a_group_change_lands_on_an_assigned_ticket_and_a_later_note_names_the_agent(migrated_sqlite_url: str,
                                                                                    tmp_path: Path) -> None:
    with desk(ZENDESK, migrated_sqlite_url, tmp_path, **SHORT) as d:
        d.fake.members = {360002: {11}}
        d.fake.agents = {7: "Ada Lovelace"}
        d.fake.ticket(ZENDESK.ticket_id, tags=list(AGENT_TAGS), group=360009, assignee=7)
        d.fake.answer_next(503, method="PUT", path=r"/35436$", after=2, message="maintenance")  # the note's PUT
        d.decide()
        first = d.attempt_writeback()
        assert isinstance(first, Wait)
        row = d.writeback()
        assert row.steps_done == ["ticket", "tags"]
        assert row.payload["remarks"] == ["triage unassigned Ada Lovelace (agent 7): not a member of group 360002, "
                                          "where this ticket now belongs."]
        d.published.deliveries.append(row.id)
        d.clock.advance(seconds=first.seconds)
        d.settle()
        ticket = d.fake.tickets["35436"]
        assert d.writeback().status == DeliveryStatus.DELIVERED and (ticket.group, ticket.assignee) == (360002, None)
        [note] = ticket.notes
        assert "triage unassigned Ada Lovelace (agent 7)" in note.body and f"triage delivery {row.id}" in note.body


def test_a_closed_ticket_is_skipped_without_an_alert_and_listed_as_skipped(
        migrated_sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    with desk(ZENDESK, migrated_sqlite_url, tmp_path, **SHORT) as d:
        d.fake.ticket(ZENDESK.ticket_id, tags=list(AGENT_TAGS), closed=True)
        ticket_id = d.decide()
        d.settle()
        row = d.writeback()
        assert (row.status, row.last_status, row.attempts) == (DeliveryStatus.SKIPPED, 422, 1)
        assert (row.last_error or "").startswith("zendesk ticket: 422 ticket closed: RecordInvalid")
        assert d.events("delivery.failed") == [] and d.metric("skipped") == 1 and d.metric("failed") == 0

        with TestClient(create_app(d.app, publish=lambda _: None)) as http:
            listed = http.get("/deliveries?status=skipped", headers=ALICE).json()["items"]
            assert [item["id"] for item in listed] == [row.id]
            detail = http.get(f"/tickets/{ticket_id}", headers=ALICE).json()
            assert {delivery["status"] for delivery in detail["deliveries"] if delivery["kind"] == "writeback"} == {
                "skipped"}
            spec = http.get("/openapi.json").json()
            assert "skipped" in spec["components"]["schemas"]["DeliveryStatus"]["enum"]
            page = sign_in(http, "alice").get(f"/desk/tickets/{ticket_id}").text
            assert "<td>skipped</td>" in page.replace("\n", "") and f"triage deliveries --retry {row.id}" in page

        shown = d.triage(monkeypatch, capsys, "deliveries", "--status", "skipped", "--json")
        assert [json.loads(line)["id"] for line in shown.splitlines()] == [row.id]
        assert d.triage(monkeypatch, capsys, "deliveries", "--retry-all").strip() == "retried 0 deliveries"
        assert d.writeback().status == DeliveryStatus.SKIPPED
        retried = d.triage(monkeypatch, capsys, "deliveries", "--retry", row.id)
        assert retried.strip() == f"retried 1 deliveries: {row.id}"
        assert d.writeback().status == DeliveryStatus.PENDING


# ---- Chatwoot: the token -------------------------------------------------------------------------------------

def test_a_chatwoot_agent_bot_token_fails_before_anything_is_written(migrated_sqlite_url: str,
                                                                   tmp_path: Path) -> None:
    bot = FakeChatwoot(token="cw-user-token-0", account_id=1, teams={5, 6}, bot_token="cw-secret-token-1")
    with desk(CHATWOOT, migrated_sqlite_url, tmp_path, fake=bot, **SHORT) as d:
        d.fake.ticket(CHATWOOT.ticket_id, tags=list(AGENT_TAGS))
        d.decide()
        d.settle()
        row = d.writeback()
        assert (row.status, row.attempts, row.steps_done) == (DeliveryStatus.FAILED, 1, [])
        assert BOT_TOKEN in (row.last_error or "")
        assert [(call.method, call.path) for call in d.fake.calls()] == [("GET", "/api/v1/profile")]
        assert d.fake.tickets["12"].priority is None and len(d.events("delivery.failed")) == 1


# ---- Freshdesk, Zammad: no note twice on a long ticket --------------------------------------------------------

@pytest.mark.parametrize("case", [FRESHDESK, ZAMMAD], ids=str)
def test_a_lost_note_answer_on_a_long_ticket_does_not_post_it_twice(case: Case, migrated_sqlite_url: str,
                                                                    tmp_path: Path) -> None:
    with desk(case, migrated_sqlite_url, tmp_path, **SHORT) as d:
        ticket = d.fake.ticket(case.ticket_id, tags=list(AGENT_TAGS))
        ticket.notes += [Note(f"reply {n}", private=False) for n in range(150)]  # the new note lands on page 2
        if case is ZAMMAD:
            d.fake.pages_articles = True
        method, path, after = case.note_call
        d.fake.answer_late(0.6, method=method, path=path, after=after)  # posted, answered after the 0.3 s timeout
        d.decide()
        d.settle()
        row = d.writeback()
        assert (row.status, row.attempts) == (DeliveryStatus.DELIVERED, 2)
        marked = [note for note in ticket.notes if f"triage delivery {row.id}" in note.body]
        assert len(marked) == 1 and len(ticket.notes) == 151
