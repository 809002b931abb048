"""Labels from the helpdesk: a Zendesk agent's group or priority change on a ticket triage wrote back.

End to end through the real HTTP app: a Zendesk ticket comes in by signed webhook, is routed and written
back to the loopback Zendesk by the outbox; then Zendesk's signed change events (tests/fixtures/zendesk,
in the shape Zendesk documents) come back: an agent's change becomes a ``helpdesk_review`` label that
route accuracy and the learned model's label reader count, with no delivery created; triage's own
user's change, a ticket triage never wrote back, and a redelivery record nothing more.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from tests.factories import ALICE, SECRETS, ManualClock, RecordingPublisher, api_environment, recording, run_deliveries
from tests.fakehelpdesks import FakeZendesk
from tests.writeback_cases import ZENDESK, config_file, post_signed
from tests.writeback_cases import ZENDESK_AGENT as AGENT
from tests.writeback_cases import ZENDESK_BOT as BOT
from tests.writeback_cases import zendesk_change as change
from tests.writeback_cases import zendesk_fixture as fixture
from triage.api.app import create_app
from triage.app import App
from triage.intake import labels
from triage.intake.labels import HelpdeskMapping, Label
from triage.intake.platforms import sample_payloads
from triage.learning.reviews import review_labels
from triage.settings import load_settings
from triage.states.tickets import EventKind
from triage.store.accuracy import DecisionAccuracy, accuracy
from triage.store.models import Delivery, Event, Ticket
from triage.tickets import lifecycle

TOKEN = "zd-secret-token-1"
ROUTING = ["problem_type", "urgent_level"]
FIELDS = ["problem_type", "device_model", "urgent_level", "user_requirements"]


@dataclass
class Desk:
    app: App
    client: TestClient
    zendesk: FakeZendesk
    published: RecordingPublisher

    def post(self, payload: dict[str, Any], secret: str = SECRETS["zendesk"]) -> Any:
        return post_signed(self.client, "zendesk", payload, secret)

    def reviews(self) -> list[Event]:
        with self.app.sessions() as session:
            return list(session.scalars(select(Event).where(Event.kind == EventKind.HELPDESK_REVIEW)
                                        .order_by(Event.id)))

    def deliveries(self) -> int:
        with self.app.sessions() as session:
            return session.scalar(select(func.count()).select_from(Delivery)) or 0

    def ticket(self, ticket_id: int) -> Ticket:
        with self.app.sessions() as session:
            return session.get_one(Ticket, ticket_id)

    def written_back(self, text: str = "My router is broken") -> int:
        """A Zendesk ticket in by webhook, routed by the rules, written back to the loopback Zendesk."""
        payload = sample_payloads()["zendesk"]
        payload["detail"].update(subject="Router", description=text)
        answer = self.post(payload)
        assert answer.status_code == 202, answer.text
        ticket_id = int(answer.json()["ticket_id"])
        route(self.app, ticket_id)
        assert set(run_deliveries(self.app, self.published).values()) == {"delivered"}
        return ticket_id


def route(app: App, ticket_id: int) -> None:
    lease = lifecycle.lease(app.sessions, ticket_id, app.clock.now(), lease_seconds=60)
    assert lease is not None
    result = app.rules.extract(lease.conversation)
    assert lifecycle.finish(app.sessions, lease, result, app.router.route(result.ticket or {}, lease.sla_started_at),
                            app.clock.now(), outbox=app.outbox)


def _desk(database_url: str, tmp_path: Path, zendesk: FakeZendesk, **env: str) -> Iterator[Desk]:
    config = config_file(tmp_path, ZENDESK.toml, note=False)
    settings = load_settings(api_environment(database_url, TRIAGE_CONFIG=str(config), **ZENDESK.env(zendesk.base_url),
                                             **env))
    app = App.build(settings, clock=ManualClock())
    published = recording(app)
    zendesk.ticket(ZENDESK.ticket_id, tags=["vip"])
    with TestClient(create_app(app, publish=lambda ticket_id: None)) as client:
        yield Desk(app, client, zendesk, published)
    app.close()


@pytest.fixture
def zendesk() -> Iterator[FakeZendesk]:
    with FakeZendesk(email="bot@acme.test", token=TOKEN) as fake:
        yield fake


@pytest.fixture
def desk(migrated_database_url: str, tmp_path: Path, zendesk: FakeZendesk) -> Iterator[Desk]:
    yield from _desk(migrated_database_url, tmp_path, zendesk, TRIAGE_WRITEBACK_ZENDESK_USER_ID=BOT)


# ---- end to end -------------------------------------------------------------------------------------

def test_an_agents_group_change_is_a_label_counted_by_accuracy_and_the_label_reader(desk: Desk) -> None:
    ticket_id = desk.written_back()  # the rules: device_fault, normal -> hardware-support (group 360002), P2
    assert desk.zendesk.tickets[ZENDESK.ticket_id].group == 360002
    lifecycle.assign(desk.app.sessions, ticket_id, "bob", desk.app.clock.now(),
                     outbox=desk.app.outbox)  # the desk's claim does not block it
    before = desk.deliveries()

    answer = desk.post(change("group_assignment_changed", previous="360002", current="360001"))
    assert answer.status_code == 202, answer.text
    assert answer.json() == {"ticket_id": ticket_id, "status": "routed", "duplicate": False,
                             "review": f"recorded as a review by zendesk:{AGENT}"}
    [review] = desk.reviews()
    assert review.actor == f"zendesk:{AGENT}" and review.ticket_id == ticket_id
    assert review.after["label"] == {  # type: ignore[index]
        "source": "zendesk", "change": "group", "previous": "360002", "current": "360001",
        "route": "hardware-escalation", "priority": None,
        "fields": {"problem_type": "device_fault", "urgent_level": "high"},
        "delivery_id": fixture("group_assignment_changed")["id"], "at": "2026-12-08T03:20:41.118235+00:00"}
    # nothing is written back and nothing else changes: the ticket keeps the machine's decision and its holder
    assert desk.deliveries() == before and desk.published.deliveries == []
    ticket = desk.ticket(ticket_id)
    assert (ticket.status, ticket.route, ticket.assigned_to) == ("routed", "hardware-support", "bob")

    report = accuracy(desk.app.sessions, FIELDS, since=None)
    assert (report.reviewed, report.corrected) == (1, 1)
    assert report.routes == [DecisionAccuracy("hardware-support", 1, 1)]
    assert report.priorities == []
    by_field = {f.field: (f.reviewed, f.corrected) for f in report.fields}
    assert by_field == {"problem_type": (1, 0), "urgent_level": (1, 1), "device_model": (0, 0),
                        "user_requirements": (0, 0)}
    [row] = review_labels(desk.app.sessions, ROUTING).rows
    assert row.labels == {"problem_type": "device_fault", "urgent_level": "high"}
    assert row.key == f"ticket:{ticket_id}" and "router is broken" in row.text

    answer = desk.client.get("/stats/accuracy", headers=ALICE)
    assert answer.status_code == 200, answer.text
    assert answer.json()["routes"] == [{"value": "hardware-support", "reviewed": 1, "corrected": 1, "survived": 0,
                                        "survived_share": 0.0}]


def test_a_priority_change_is_a_priority_label(desk: Desk) -> None:
    ticket_id = desk.written_back()
    answer = desk.post(change("priority_changed", previous="HIGH", current="URGENT"))
    assert answer.status_code == 202, answer.text
    [review] = desk.reviews()
    label = review.after["label"]  # type: ignore[index]
    # "urgent" is what hardware-escalation (P1) writes; every P1 rule asks urgent_level high
    assert (label["priority"], label["route"], label["fields"]) == ("P1", None, {"urgent_level": "high"})
    report = accuracy(desk.app.sessions, ROUTING, since=None)
    assert report.priorities == [DecisionAccuracy("P2", 1, 1)] and report.routes == []
    assert {f.field: f.reviewed for f in report.fields} == {"problem_type": 0, "urgent_level": 1}
    assert desk.ticket(ticket_id).priority == "P2"


def test_triage_own_change_and_a_redelivery_record_nothing_more(desk: Desk) -> None:
    desk.written_back()
    own = desk.post(change("group_assignment_changed", actor=BOT, previous="360002", current="360001"))
    assert own.status_code == 200 and own.json() == {"ignored": "the change was made by triage's own Zendesk user"}
    assert desk.reviews() == []

    event = change("group_assignment_changed", previous="360002", current="360001")
    assert desk.post(event).status_code == 202
    again = desk.post(event)  # Zendesk delivers the same event again
    assert again.status_code == 202 and again.json()["duplicate"] is True
    assert len(desk.reviews()) == 1


def test_a_ticket_triage_never_wrote_back_is_ignored_with_a_reason(desk: Desk,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="triage.intake.labels"):
        unknown = desk.post(change("group_assignment_changed", ticket="777001", previous="1", current="360001"))
    assert unknown.status_code == 200
    assert unknown.json() == {"ignored": "zendesk ticket 777001 was never written back by triage"}
    assert any("never written back" in record.getMessage() for record in caplog.records)

    # in, routed, but its write-back not delivered yet: not one triage wrote back
    payload = sample_payloads()["zendesk"]
    payload["detail"].update(description="My router is broken")
    ticket_id = int(desk.post(payload).json()["ticket_id"])
    route(desk.app, ticket_id)
    pending = desk.post(change("group_assignment_changed", previous="360002", current="360001"))
    assert pending.status_code == 200 and "never written back" in pending.json()["ignored"]
    assert desk.reviews() == []


@pytest.mark.parametrize(("current", "reason"), [
    ("424242", "group 424242 is no route's write-back group"),
    (None, "the group was cleared"),
])
def test_a_group_no_route_maps_gives_no_label(desk: Desk, current: str | None, reason: str) -> None:
    desk.written_back()
    answer = desk.post(change("group_assignment_changed", previous="360002", current=current))
    assert answer.status_code == 200 and answer.json() == {"ignored": reason}
    assert desk.reviews() == []


def test_without_triage_user_id_no_change_is_taken_and_a_warning_says_so_once(
        migrated_sqlite_url: str, tmp_path: Path, zendesk: FakeZendesk, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(labels, "NO_USER_ID", labels.WarnOnce())  # a fresh "once" for this test
    for desk in _desk(migrated_sqlite_url, tmp_path, zendesk):
        desk.written_back()
        with caplog.at_level(logging.WARNING, logger="triage.intake.labels"):
            answers = [desk.post(change("group_assignment_changed", event_id=f"e-{n}", previous="360002",
                                        current="360001")) for n in range(2)]
        assert [a.status_code for a in answers] == [200, 200]
        assert "user_id is not set" in answers[0].json()["ignored"]
        assert len([r for r in caplog.records if "TRIAGE_WRITEBACK_ZENDESK_USER_ID" in r.getMessage()]) == 1
        assert desk.reviews() == []


# ---- what Zendesk may send that is not usable -------------------------------------------------------

def _broken(mutate: Any) -> dict[str, Any]:
    payload = change("group_assignment_changed", previous="360002", current="360001")
    mutate(payload)
    return payload


@pytest.mark.parametrize(("mutate", "reason"), [
    (lambda p: p.pop("event"), '"event" is required and must be an object'),
    (lambda p: p["event"].update(current={"id": 1}), '"event.current" of a group change must be a string'),
    (lambda p: p["detail"].pop("actor_id"), '"detail.actor_id" is required'),
    (lambda p: p["detail"].update(id=""), '"detail.id" is required'),
    (lambda p: p["detail"].update(actor_id="9" * 60), '"detail.actor_id" is 60 characters long'),
    (lambda p: p["event"].update(current="36\n0001"), '"event.current" holds a control character'),
], ids=["no-event", "object-value", "no-actor", "no-ticket", "long-actor", "control-character"])
def test_a_malformed_change_is_a_400_with_its_reason(desk: Desk, mutate: Any, reason: str) -> None:
    answer = desk.post(_broken(mutate))
    assert answer.status_code == 400, answer.text
    assert reason in answer.json()["detail"]
    assert desk.reviews() == []


def test_a_change_with_a_wrong_signature_is_refused(desk: Desk) -> None:
    answer = desk.post(change("group_assignment_changed", previous="360002", current="360001"), secret="wrong")
    assert answer.status_code == 401


# ---- the mapping read backwards ----------------------------------------------------------------------

def test_a_group_several_routes_share_gives_no_label(tmp_path: Path) -> None:
    toml = ZENDESK.toml.replace("[writeback.zendesk.routes.\"hardware-support\"]\ngroup_id = 360002",
                                "[writeback.zendesk.routes.\"hardware-support\"]\ngroup_id = 360001")
    settings = load_settings({"TRIAGE_CONFIG": str(config_file(tmp_path, toml))})
    mapping = HelpdeskMapping(settings.writeback.zendesk, settings.routing)
    assert mapping.label("group", "360001") == ("group 360001 is the write-back group of several routes "
                                                "(hardware-escalation, hardware-support): no route label")


def test_a_priority_label_comes_from_the_priorities_table_and_the_routes_own_priority(tmp_path: Path) -> None:
    settings = load_settings({"TRIAGE_CONFIG": str(config_file(tmp_path, ZENDESK.toml))})
    mapping = HelpdeskMapping(settings.writeback.zendesk, settings.routing)
    # P2 = "high", P3 = "normal"; hardware-escalation (P1) writes "urgent"; nothing writes "low"
    assert mapping.label("priority", "high") == Label(priority="P2")  # P2 is the fallback's too: no fields
    assert mapping.label("priority", "normal") == Label(priority="P3")  # P3 rules disagree on every field
    assert mapping.label("priority", "urgent") == Label(priority="P1", fields={"urgent_level": "high"})
    assert mapping.label("priority", "low") == "no triage priority maps to priority low"
    assert mapping.label("group", "360002") == Label(route="hardware-support", fields={"problem_type": "device_fault"})
