"""The API the dispatch desk stands on, on SQLite and PostgreSQL: release, resolve, the new filters and the
rule for impossible filter values, SLA honesty, and accuracy from corrections."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from tests.factories import (
    EPOCH,
    SCHEMA,
    TOKENS_ENV,
    ManualClock,
    bearer,
    build_app,
    finish_with_rules,
    settings_for,
    submit,
)
from triage.api.app import create_app
from triage.app import App
from triage.conversation import Conversation
from triage.intake.platforms import InboundMessage, get_platform, sample_payloads, signed_request
from triage.intake.receive import receive
from triage.store.filters import FilterValues, UnknownFilterValueError
from triage.store.queries import TicketFilter

ALICE, BOB = bearer("alice"), bearer("bob")
INTERCOM_SECRET = "intercom-desk-secret"


@dataclass
class Desk:
    app: App
    client: TestClient
    clock: ManualClock
    enqueued: list[int] = field(default_factory=list)

    def ticket(self, ticket_id: int) -> dict[str, object]:
        response = self.client.get(f"/tickets/{ticket_id}", headers=ALICE)
        assert response.status_code == 200, response.text
        ticket: dict[str, object] = response.json()["ticket"]
        return ticket


@pytest.fixture
def desk(migrated_database_url: str) -> Iterator[Desk]:
    clock = ManualClock()
    app = build_app(migrated_database_url, clock=clock, TRIAGE_API_TOKENS=TOKENS_ENV,
                    TRIAGE_WEBHOOK_SECRET_INTERCOM=INTERCOM_SECRET)
    enqueued: list[int] = []
    with TestClient(create_app(app, publish=enqueued.append)) as client:
        yield Desk(app, client, clock, enqueued)
    app.close()


def _routed(desk: Desk, external_id: str, text: str) -> int:
    ticket_id = submit(desk.app, external_id, text)
    finish_with_rules(desk.app, ticket_id)
    return ticket_id


# ---- release and resolve ---------------------------------------------------------------------------

def test_only_the_holder_releases_a_claim(desk: Desk) -> None:
    ticket_id = _routed(desk, "C-1", "My router is broken")
    assert desk.client.post(f"/tickets/{ticket_id}/claim", headers=ALICE).status_code == 200
    refused = desk.client.delete(f"/tickets/{ticket_id}/claim", headers=BOB)
    assert refused.status_code == 409 and "alice" in refused.json()["detail"]
    released = desk.client.delete(f"/tickets/{ticket_id}/claim", headers=ALICE)
    assert released.status_code == 200 and released.json() == {"ticket_id": ticket_id, "assigned_to": None}
    assert desk.ticket(ticket_id)["assigned_to"] is None
    assert desk.client.delete(f"/tickets/{ticket_id}/claim", headers=ALICE).status_code == 409  # nobody holds it
    assert desk.client.delete("/tickets/9999/claim", headers=ALICE).status_code == 404
    events = desk.client.get(f"/tickets/{ticket_id}", headers=ALICE).json()["events"]
    assert [(e["kind"], e["actor"]) for e in events][-2:] == [("claimed", "alice"), ("released", "alice")]


def test_resolve_is_final_audited_and_a_new_message_reopens_it(desk: Desk) -> None:
    queued = submit(desk.app, "R-0", "hello")
    assert desk.client.post(f"/tickets/{queued}/resolve", headers=ALICE).status_code == 409  # not triaged yet
    ticket_id = _routed(desk, "R-1", "My router is broken")
    resolved = desk.client.post(f"/tickets/{ticket_id}/resolve", headers=BOB)
    assert resolved.status_code == 200 and resolved.json() == {"ticket_id": ticket_id, "status": "resolved"}
    assert desk.client.post(f"/tickets/{ticket_id}/resolve", headers=BOB).status_code == 409
    assert desk.ticket(ticket_id)["status"] == "resolved"
    events = desk.client.get(f"/tickets/{ticket_id}", headers=ALICE).json()["events"]
    assert (events[-1]["kind"], events[-1]["actor"], events[-1]["after"]["status"]) == ("resolved", "bob", "resolved")
    desk.clock.advance(days=3)
    again = receive(desk.app.sessions, "shop", "R-1", Conversation.from_text("It broke again"), ["message:2"],
                    desk.clock.now(), outbox=desk.app.outbox)
    assert again.enqueue and desk.ticket(ticket_id)["status"] == "queued"
    assert desk.ticket(ticket_id)["sla_started_at"] == desk.clock.now().isoformat(), "a reopening starts a new wait"


# ---- filters ---------------------------------------------------------------------------------------

def test_assigned_to_priority_and_text_search(desk: Desk) -> None:
    router = _routed(desk, "F-1", "My ROUTER is broken, urgent!")
    lower = _routed(desk, "F-2", "the router blinks red")
    chinese = _routed(desk, "F-3", "我的路由器坏了，很着急")
    percent = _routed(desk, "F-4", "How do I set an alarm? 100% sure it is simple")
    desk.client.post(f"/tickets/{router}/claim", headers=ALICE)
    desk.client.post(f"/tickets/{chinese}/claim", headers=BOB)

    def ids(**params: str) -> set[int]:
        response = desk.client.get("/tickets", params={"limit": 50, **params}, headers=ALICE)
        assert response.status_code == 200, response.text
        return {t["id"] for t in response.json()["items"]}

    assert ids(q="Router") == {router, lower}
    assert ids(q="路由器") == {chinese}
    assert ids(q="100%") == {percent} and ids(q="0_") == set(), "% and _ are text, not wildcards"
    assert ids(q="device_fault") >= {router, chinese}, "the fields are searched too"
    assert ids(q="F-3") == {chinese}, "and the external id"
    assert ids(assigned_to="me") == {router}
    assert ids(assigned_to="bob") == {chinese}
    assert ids(assigned_to="nobody-yet") == set()
    p1 = {t["id"] for t in desk.client.get("/tickets", params={"priority": "P1"}, headers=ALICE).json()["items"]}
    assert router in p1 and lower not in p1
    assert ids(q="router", assigned_to="me", priority="P1") == {router}


@pytest.mark.parametrize(("param", "value", "listed"), [
    ("status", "bogus", "needs_review"),
    ("route", "nowhere", "hardware-escalation"),
    ("priority", "P9", "P1"),
    ("problem_type", "bogus", "device_fault"),
    ("urgent_level", "soon", "high"),
])
def test_a_filter_value_no_ticket_can_have_is_400_listing_the_allowed_values(desk: Desk, param: str, value: str,
                                                                            listed: str) -> None:
    response = desk.client.get("/tickets", params={param: value}, headers=ALICE)
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert f"{param}={value!r}" in detail and listed in detail


def test_a_field_without_an_enum_takes_any_value() -> None:
    base = settings_for("sqlite://")
    settings = base.model_copy(update={"api": base.api.model_copy(update={"filter_fields": ["device_model",
                                                                                           "urgent_level"]})})
    values = FilterValues.of(settings, SCHEMA)
    values.check(TicketFilter(fields={"device_model": "Watch S1", "urgent_level": "high"}))
    with pytest.raises(UnknownFilterValueError, match="urgent_level='soon' matches no ticket; allowed: low, normal"):
        values.check(TicketFilter(fields={"urgent_level": "soon"}))
    assert values.priorities == ("P1", "P2", "P3", "P4") and "manual-review" in values.routes


# ---- SLA honesty -----------------------------------------------------------------------------------

def test_the_sla_counts_from_when_the_customer_wrote_not_from_routing(desk: Desk) -> None:
    written = EPOCH - timedelta(minutes=30)
    received = receive(desk.app.sessions, "shop", "S-1", Conversation.from_text("My router is broken, urgent!"),
                       ["message:1"], desk.clock.now(), sent_at=written, outbox=desk.app.outbox)
    desk.clock.advance(hours=2)  # it waited in the queue (retries, a broker outage...) before it was routed
    finish_with_rules(desk.app, received.ticket_id)
    ticket = desk.ticket(received.ticket_id)
    assert (ticket["route"], ticket["priority"]) == ("hardware-escalation", "P1")
    assert ticket["sla_started_at"] == written.isoformat()
    assert ticket["sla_due_at"] == (written + timedelta(hours=1)).isoformat()
    listed = desk.client.get("/queues", headers=ALICE).json()["routes"]["hardware-escalation"]
    assert listed["breached_count"] == 1, "due an hour after the customer wrote: already breached"


def test_a_clock_ahead_on_the_platform_never_puts_the_start_in_the_future(desk: Desk) -> None:
    received = receive(desk.app.sessions, "shop", "S-2", Conversation.from_text("hi"), ["message:1"],
                       desk.clock.now(), sent_at=EPOCH + timedelta(hours=5), outbox=desk.app.outbox)
    assert desk.ticket(received.ticket_id)["sla_started_at"] == EPOCH.isoformat()


def test_a_correction_recomputes_the_due_time_from_the_same_start_only_when_the_priority_changes(desk: Desk) -> None:
    ticket_id = _routed(desk, "S-3", "How do I set an alarm on my Watch S1?")  # consult: P3, 24 h
    start = EPOCH
    assert desk.ticket(ticket_id)["sla_due_at"] == (start + timedelta(hours=24)).isoformat()
    desk.clock.advance(hours=5)
    fields = dict(desk.app.schema.project(desk.ticket(ticket_id)))  # type: ignore[arg-type]
    same_route = desk.client.patch(f"/tickets/{ticket_id}", json={**fields, "device_model": "Watch S2"}, headers=ALICE)
    assert same_route.status_code == 200
    assert same_route.json()["ticket"]["sla_due_at"] == (start + timedelta(hours=24)).isoformat(), "left alone"
    desk.clock.advance(hours=1)
    urgent = desk.client.patch(f"/tickets/{ticket_id}", json={"problem_type": "device_fault", "urgent_level": "high"},
                               headers=ALICE).json()["ticket"]
    assert (urgent["priority"], urgent["sla_due_at"]) == ("P1", (start + timedelta(hours=1)).isoformat())


def test_a_platform_message_time_starts_the_sla(desk: Desk) -> None:
    payload = sample_payloads()["intercom"]  # created_at 1700000000: the customer wrote in November 2023
    body, headers = signed_request("intercom", payload, INTERCOM_SECRET, now=time.time())
    response = desk.client.post("/webhooks/intercom", content=body, headers=headers)
    assert response.status_code == 202, response.text
    assert desk.ticket(response.json()["ticket_id"])["sla_started_at"] == "2023-11-14T22:13:20+00:00"


# ---- accuracy --------------------------------------------------------------------------------------

def test_accuracy_counts_each_review_of_an_extractors_ticket(desk: Desk) -> None:
    consult = _routed(desk, "A-1", "How do I set an alarm?")            # consult / normal
    kept = _routed(desk, "A-2", "How do I change my address?")          # resolved as it is: every field kept
    twice = _routed(desk, "A-3", "How do I pair my speaker?")
    old = _routed(desk, "A-0", "What are your opening hours?")
    desk.client.post(f"/tickets/{old}/resolve", headers=ALICE)          # before the window asked for below
    desk.clock.advance(days=1)
    since = desk.clock.now().isoformat()
    fields = desk.ticket(consult)
    assert desk.client.patch(f"/tickets/{consult}", headers=ALICE, json={
        "problem_type": "device_fault", "urgent_level": fields["urgent_level"]}).status_code == 200
    desk.client.post(f"/tickets/{kept}/resolve", headers=ALICE)
    desk.client.patch(f"/tickets/{twice}", headers=ALICE, json={"problem_type": "device_fault"})
    desk.client.patch(f"/tickets/{twice}", headers=ALICE, json={"problem_type": "complaint"})  # a person's: no label
    desk.client.post(f"/tickets/{twice}/resolve", headers=ALICE)                                # after a correction

    report = desk.client.get("/stats/accuracy", params={"since": since}, headers=ALICE).json()
    assert (report["reviewed"], report["corrected"]) == (3, 2)
    by_field = {f["field"]: f for f in report["fields"]}
    assert by_field["problem_type"] == {"field": "problem_type", "reviewed": 3, "corrected": 2, "survived": 1,
                                        "survived_share": pytest.approx(1 / 3)}
    assert by_field["urgent_level"]["corrected"] == 0 and by_field["urgent_level"]["survived_share"] == 1.0
    assert report["corrections"][0] == {"field": "problem_type", "from": "consult", "to": "device_fault", "count": 2}
    [version] = report["versions"]
    assert (version["extractor"], version["reviewed"], version["corrected"]) == ("rules", 3, 2)
    everything = desk.client.get("/stats/accuracy", headers=ALICE).json()
    assert everything["reviewed"] == 4 and everything["since"] is None
    naive = desk.client.get("/stats/accuracy", params={"since": "2999-01-01T00:00:00"}, headers=ALICE).json()
    assert naive["reviewed"] == 0 and naive["fields"][0]["survived_share"] is None


def test_the_new_endpoints_need_a_token_and_are_documented(desk: Desk) -> None:
    for method, path in (("DELETE", "/tickets/1/claim"), ("POST", "/tickets/1/resolve"), ("GET", "/stats/accuracy")):
        assert desk.client.request(method, path).status_code == 401
        assert desk.client.request(method, path, headers={"Authorization": "Bearer wrong"}).status_code == 401
    paths = desk.client.get("/openapi.json").json()["paths"]
    assert {"401", "404", "409"} <= set(paths["/tickets/{ticket_id}/claim"]["delete"]["responses"])
    assert {"401", "404", "409"} <= set(paths["/tickets/{ticket_id}/resolve"]["post"]["responses"])
    assert "400" in paths["/tickets"]["get"]["responses"]
    names = {p["name"] for p in paths["/tickets"]["get"]["parameters"]}
    assert {"assigned_to", "priority", "q"} <= names



@pytest.mark.parametrize(("source", "expected"), [
    ("intercom", "2023-11-14T22:13:20+00:00"),      # item.created_at (unix seconds)
    ("zendesk", "2024-04-17T17:18:10+00:00"),       # detail.created_at, else the ticket.created event's time
    ("chatwoot", "2024-07-23T18:02:49.353000+00:00"),
    ("zammad", "2024-05-02T09:14:03.116000+00:00"),  # article.created_at
    ("freshdesk", None),                            # the rule's body carries no time: the received time
    ("generic", None),
])
def test_each_platform_dates_the_customer_message_when_its_payload_does(source: str, expected: str | None) -> None:
    message = get_platform(source).parse({}, json.dumps(sample_payloads()[source]).encode())
    assert isinstance(message, InboundMessage)
    assert (message.sent_at.isoformat() if message.sent_at else None) == expected


def test_ids_beyond_the_keys_and_nul_in_free_text_filters_are_answers_not_crashes(desk: Desk) -> None:
    for ticket_id in (2**31, 2**63, 2**70):
        assert desk.client.delete(f"/tickets/{ticket_id}/claim", headers=ALICE).status_code == 404
        assert desk.client.post(f"/tickets/{ticket_id}/resolve", headers=ALICE).status_code == 404
    routed = _routed(desk, "N-1", "router broken")
    for params in ({"q": "rou\x00ter", "assigned_to": "x\x00"}, {"q": "rou\x00ter"}):  # the API's rule for any query
        response = desk.client.get("/tickets", params=params, headers=ALICE)
        assert response.status_code == 400 and "holds a control character" in response.json()["detail"]
    found = desk.client.get("/tickets", params={"q": "ROUTER"}, headers=ALICE).json()["items"]
    assert [t["id"] for t in found] == [routed]
