"""One authority over a ticket: a ticket someone holds is theirs, on every surface, decided under the row lock.

The matrix: surface (the API, the desk) x action (correct, resolve, reprocess, release) on a ticket alice
holds, asked by bob, on SQLite and PostgreSQL: a 409 naming alice (a message on the desk page), nothing
changed, nothing published; the same action by alice goes through. The race: bob's action waits for the
ticket's row lock behind alice's claim (PostgreSQL, where the lock is real), so his check must be made under
the lock, not in a read before it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, func, select, text

from tests.factories import ALICE, BOB, Service, csrf_of, finish_with_rules, serve, sign_in, submit
from tests.harness import LOCK_WAIT_SECONDS, until_lock_waiters
from triage.store.models import Event, Ticket

SURFACES = ("api", "desk")
ACTIONS = ("correct", "resolve", "reprocess", "release")
#: The correction both surfaces send: the one field that moves the ticket to a P1 route.
CORRECTION = {"urgent_level": "high"}


def _form(service: Service, ticket_id: int, csrf: str) -> dict[str, str]:
    """The desk's correction form as the page fills it in (the ticket's fields), with :data:`CORRECTION`."""
    with service.parts.sessions() as session:
        fields = {**(session.get_one(Ticket, ticket_id).fields or {}), **CORRECTION}
    form = {"csrf_token": csrf, "field:problem_type": f'"{fields["problem_type"]}"',
            "field:urgent_level": f'"{fields["urgent_level"]}"',
            "field:user_requirements": "\n".join(fields["user_requirements"])}
    if fields["device_model"] is None:
        form["none:device_model"] = "on"
    else:
        form["field:device_model"] = fields["device_model"]
    return form


class People:
    """alice and bob before one HTTP service: bearer tokens for the API, a signed-in desk client each."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self._desks: dict[str, TestClient] = {}

    def desk(self, person: str) -> TestClient:
        """``person``'s desk client (signed in on its own cookie jar, redirects not followed)."""
        if person not in self._desks:
            self._desks[person] = sign_in(TestClient(self.service.client.app, follow_redirects=False), person)
        return self._desks[person]

    def act(self, surface: str, action: str, ticket_id: int, person: str) -> httpx.Response:
        """``person`` takes ``action`` on the ticket through ``surface``."""
        if surface == "desk":
            client = self.desk(person)
            csrf = csrf_of(client.get(f"/desk/tickets/{ticket_id}").text)
            data = _form(self.service, ticket_id, csrf) if action == "correct" else {"csrf_token": csrf}
            return client.post(f"/desk/tickets/{ticket_id}/{action}", data=data)
        client, headers = self.service.client, ALICE if person == "alice" else BOB
        calls: dict[str, Callable[[], httpx.Response]] = {
            "correct": lambda: client.patch(f"/tickets/{ticket_id}", json=CORRECTION, headers=headers),
            "resolve": lambda: client.post(f"/tickets/{ticket_id}/resolve", headers=headers),
            "reprocess": lambda: client.post(f"/tickets/{ticket_id}/reprocess", headers=headers),
            "release": lambda: client.delete(f"/tickets/{ticket_id}/claim", headers=headers),
        }
        return calls[action]()

    def close(self) -> None:
        for client in self._desks.values():
            client.close()


@contextmanager
def people_on(database_url: str) -> Iterator[People]:
    with serve(database_url) as service:
        people = People(service)
        try:
            yield people
        finally:
            people.close()


@pytest.fixture
def people(migrated_database_url: str) -> Iterator[People]:
    with people_on(migrated_database_url) as both:
        yield both


def routed(service: Service, external_id: str) -> int:
    ticket_id = submit(service.parts, external_id, "My speaker does not turn on")
    finish_with_rules(service.parts, ticket_id)
    return ticket_id


def state(service: Service, ticket_id: int) -> tuple[Any, ...]:
    """What an action could change: the ticket's status, fields, route, holder and run, and its audit trail."""
    with service.parts.sessions() as session:
        ticket = session.get_one(Ticket, ticket_id)
        events = session.scalar(select(func.count()).select_from(Event).where(Event.ticket_id == ticket_id))
        return ticket.status, ticket.fields, ticket.route, ticket.assigned_to, ticket.run, events


SUCCESS = {("api", "correct"): 200, ("api", "resolve"): 200, ("api", "reprocess"): 202, ("api", "release"): 200}


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("surface", SURFACES)
def test_someone_elses_assignment_is_refused_on_every_surface(people: People, surface: str, action: str) -> None:
    service = people.service
    ticket_id = routed(service, f"{surface}-{action}")
    assert service.client.post(f"/tickets/{ticket_id}/claim", headers=ALICE).status_code == 200
    before = state(service, ticket_id)

    refused = people.act(surface, action, ticket_id, "bob")
    assert refused.status_code == 409, refused.text
    if surface == "api":
        assert refused.json() == {"detail": f"ticket {ticket_id} is claimed by alice: only the holder can act on it "
                                            "until they release it"}
    else:
        assert "text/html" in refused.headers["content-type"]
        assert f"ticket {ticket_id} is claimed by alice: only the holder can act on it" in refused.text
        assert 'role="alert"' in refused.text
    assert state(service, ticket_id) == before, "nothing changed"
    assert service.enqueued == [], "nothing published"

    done = people.act(surface, action, ticket_id, "alice")  # the holder may
    assert done.status_code == SUCCESS.get((surface, action), 303), done.text
    assert state(service, ticket_id) != before


@pytest.mark.parametrize("surface", SURFACES)
def test_a_ticket_nobody_holds_is_anyones_and_the_audit_names_who_acted(people: People, surface: str) -> None:
    service = people.service
    ticket_id = routed(service, f"free-{surface}")
    assert people.act(surface, "correct", ticket_id, "bob").status_code == (200 if surface == "api" else 303)
    with service.parts.sessions() as session:
        last = session.scalars(select(Event).where(Event.ticket_id == ticket_id).order_by(Event.id.desc())).first()
        assert last is not None and (last.kind, last.actor) == ("corrected", "bob")
        assert session.get_one(Ticket, ticket_id).fields["urgent_level"] == "high"


@pytest.mark.parametrize("surface", SURFACES)
def test_a_correction_the_schema_refuses_changes_nothing_on_either(people: People, surface: str) -> None:
    """The lifecycle validates the fields that would result: a ticket not extracted yet has none, so a correction
    of one field leaves the others missing, whichever surface sends it."""
    service = people.service
    ticket_id = submit(service.parts, f"bad-{surface}", "My speaker does not turn on")
    before = state(service, ticket_id)
    if surface == "api":
        refused = service.client.patch(f"/tickets/{ticket_id}", json=CORRECTION, headers=BOB)
        assert refused.status_code == 422
        detail = refused.json()["detail"]
        assert detail["missing"] == ["problem_type", "device_model", "user_requirements"]
        assert detail["message"].startswith("the corrected ticket lacks required fields: problem_type")
    else:
        client = people.desk("bob")
        csrf = csrf_of(client.get(f"/desk/tickets/{ticket_id}").text)
        refused = client.post(f"/desk/tickets/{ticket_id}/correct",
                              data={"csrf_token": csrf, "field:urgent_level": '"high"'})
        assert refused.status_code == 422
        assert refused.text.count('role="alert">a value is required</p>') == 2, "problem_type and device_model"
    assert state(service, ticket_id) == before


# ---- two people at once (PostgreSQL: the row lock is real) ---------------------------------------------------

@pytest.mark.postgres
@pytest.mark.parametrize("action", ["correct", "resolve", "reprocess"])
@pytest.mark.parametrize("surface", SURFACES)
def test_two_people_at_once_the_one_behind_the_claim_is_refused(migrated_postgres_url: str, surface: str,
                                                                action: str) -> None:
    """The ticket's row is locked (as by another person's action) while alice claims it and then bob acts: both
    queue on the lock, alice first. When it is let go, alice's claim goes through, and bob's action, checked
    under the lock, finds her claim: a 409, never an action on her ticket. A check made in a read before the
    lock (as the desk's used to be) would have found nobody holding it."""
    with people_on(migrated_postgres_url) as people:
        running = people.service
        ticket_id = routed(running, "race")
        answers: dict[str, httpx.Response] = {}

        def run(name: str, call: Callable[[], httpx.Response]) -> threading.Thread:
            thread = threading.Thread(target=lambda: answers.__setitem__(name, call()), name=name)
            thread.start()
            return thread

        bob_desk = people.desk("bob")  # the page (and its CSRF token) is read before the race, as a person would
        csrf = csrf_of(bob_desk.get(f"/desk/tickets/{ticket_id}").text)
        form = _form(running, ticket_id, csrf) if action == "correct" else {"csrf_token": csrf}
        bob_acts: Callable[[], httpx.Response] = (
            (lambda: bob_desk.post(f"/desk/tickets/{ticket_id}/{action}", data=form)) if surface == "desk"
            else (lambda: people.act("api", action, ticket_id, "bob")))
        locker = create_engine(migrated_postgres_url)
        try:
            with locker.connect() as connection:
                holding = connection.begin()
                connection.execute(text("SELECT id FROM tickets WHERE id = :id FOR UPDATE"), {"id": ticket_id})
                alice = run("alice", lambda: running.client.post(f"/tickets/{ticket_id}/claim", headers=ALICE))
                until_lock_waiters(migrated_postgres_url, 1)
                bob = run("bob", bob_acts)
                until_lock_waiters(migrated_postgres_url, 2)
                holding.commit()
            alice.join(LOCK_WAIT_SECONDS)
            bob.join(LOCK_WAIT_SECONDS)
        finally:
            locker.dispose()
        assert answers["alice"].status_code == 200
        assert answers["bob"].status_code == 409 and "claimed by alice" in answers["bob"].text
        with running.parts.sessions() as session:
            ticket = session.get_one(Ticket, ticket_id)
            assert (ticket.status, ticket.assigned_to, ticket.fields["urgent_level"]) == ("routed", "alice", "normal")
            kinds = [(e.kind, e.actor) for e in session.scalars(select(Event).where(Event.ticket_id == ticket_id)
                                                                .order_by(Event.id))]
        assert kinds == [("routed", "worker"), ("claimed", "alice")]
        assert running.enqueued == []
