"""The ticket state machine: the transition table walked whole, the lease, the audit trail, reopening.

Every (action, status) pair is tried against a real database (SQLite and PostgreSQL): the pairs
the table holds must move the ticket where the table says, the others must raise (or, for the
lease-conditional steps a worker takes, change nothing). Time moves with the app's clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from tests.factories import ManualClock, build_app, count_statements, finish_with_rules, submit
from triage.app import App
from triage.conversation import Conversation
from triage.extraction.injection import InjectionMatch
from triage.extraction.types import Attempt as AttemptRecord
from triage.extraction.types import ExtractionResult
from triage.intake.receive import receive
from triage.states.tickets import (
    TRANSITIONS,
    Action,
    EventKind,
    FallbackReason,
    Flag,
    Status,
    TransitionError,
    transition,
)
from triage.store.models import Event, Ticket
from triage.store.queries import TicketNotFoundError, ticket_detail
from triage.tickets import lifecycle

LEASE = 60


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def app(migrated_database_url: str, clock: ManualClock) -> Iterator[App]:
    built = build_app(migrated_database_url, clock=clock)
    yield built
    built.close()


def _force(app: App, ticket_id: int, status: Status) -> None:
    """Put a ticket in ``status`` the way the pipeline leaves it there (a lease only while it is held)."""
    with app.sessions.begin() as session:
        session.execute(update(Ticket).where(Ticket.id == ticket_id).values(
            status=status, lease_token=None, lease_until=None, fields={"problem_type": "consult"}))


def _status(app: App, ticket_id: int) -> str:
    with app.sessions() as session:
        return session.get_one(Ticket, ticket_id).status


def _events(app: App, ticket_id: int) -> list[Event]:
    with app.sessions() as session:
        return list(session.scalars(select(Event).where(Event.ticket_id == ticket_id).order_by(Event.id)))


def _held_claim(app: App, ticket_id: int, status: Status) -> lifecycle.Lease:
    """A live claim on a ticket that is ``status`` (a worker's steps need their lease)."""
    with app.sessions.begin() as session:
        session.execute(update(Ticket).where(Ticket.id == ticket_id).values(
            status=status, lease_token="token-1", lease_until=app.clock.now() + timedelta(seconds=LEASE)))
        run = session.get_one(Ticket, ticket_id).run
    return lifecycle.Lease(ticket_id, "token-1", run, Conversation.from_text("x"), [], app.clock.now())


def _result(app: App) -> tuple[object, object]:
    result = app.rules.extract(Conversation.from_text("My router is broken, urgent"))
    return result, app.router.route(result.ticket or {}, app.clock.now())


def _person(app: App, action: Action) -> Callable[[int], object]:
    now = app.clock.now
    fields = {"problem_type": "consult", "device_model": None, "urgent_level": "low", "user_requirements": []}
    return {
        Action.CORRECT: lambda t: lifecycle.correct(app.sessions, t, "alice", fields, app.schema, app.router, now(),
                                                    outbox=app.outbox),
        Action.ASSIGN: lambda t: lifecycle.assign(app.sessions, t, "alice", now(), outbox=app.outbox),
        Action.REPROCESS: lambda t: lifecycle.reprocess(app.sessions, t, "alice", now(), outbox=app.outbox),
        Action.RESOLVE: lambda t: lifecycle.resolve(app.sessions, t, "alice", now(), outbox=app.outbox),
    }[action]


PERSON_ACTIONS = (Action.CORRECT, Action.ASSIGN, Action.REPROCESS, Action.RESOLVE)


@pytest.mark.parametrize("action", PERSON_ACTIONS)
@pytest.mark.parametrize("status", list(Status))
def test_a_persons_action_follows_the_table(app: App, action: Action, status: Status) -> None:
    ticket_id = submit(app, f"{action}-{status}")
    _force(app, ticket_id, status)
    allowed = TRANSITIONS[action].get(status)
    if allowed is None:
        with pytest.raises(TransitionError):
            _person(app, action)(ticket_id)
        assert _status(app, ticket_id) == status, "a refused transition changes nothing"
    else:
        _person(app, action)(ticket_id)
        assert _status(app, ticket_id) == allowed.target


@pytest.mark.parametrize("status", list(Status))
def test_releasing_a_claim_follows_the_table(app: App, status: Status) -> None:
    ticket_id = submit(app, f"release-{status}")
    _force(app, ticket_id, status)
    lifecycle.assign(app.sessions, ticket_id, "alice", app.clock.now(), outbox=app.outbox)
    lifecycle.unassign(app.sessions, ticket_id, "alice", app.clock.now(), outbox=app.outbox)
    assert _status(app, ticket_id) == TRANSITIONS[Action.UNASSIGN][status].target


@pytest.mark.parametrize("status", list(Status))
def test_a_new_customer_message_follows_the_table(app: App, status: Status) -> None:
    ticket_id = submit(app, f"append-{status}")
    _force(app, ticket_id, status)
    received = receive(app.sessions, "shop", f"append-{status}", Conversation.from_text("any news?"),
                       [f"message:{status}"], app.clock.now(), outbox=app.outbox)
    step = TRANSITIONS[Action.APPEND_MESSAGE][status]
    assert (received.status, received.enqueue) == (step.target, step.new_run)


WORKER_STEPS: dict[Action, Callable[[App, lifecycle.Lease], bool]] = {
    Action.FINISH: lambda app, c: lifecycle.finish(app.sessions, c, *_result(app), app.clock.now(),  # type: ignore[arg-type]
                                                   outbox=app.outbox),
    Action.FINISH_FALLBACK: lambda app, c: lifecycle.finish_fallback(app.sessions, c, *_result(app),  # type: ignore[arg-type]
                                                                    app.clock.now(), outbox=app.outbox),
    Action.SEND_TO_FALLBACK: lambda app, c: lifecycle.send_to_fallback(
        app.sessions, c, [], FallbackReason.INVALID_AFTER_ATTEMPTS, "bad", app.clock.now(), outbox=app.outbox),
    Action.HOLD_FOR_REVIEW: lambda app, c: lifecycle.hold_for_review(
        app.sessions, c, _result(app)[0], app.router.fallback(app.clock.now()),  # type: ignore[arg-type]
        FallbackReason.INJECTION_SUSPECTED, "suspected injection", app.clock.now(), outbox=app.outbox),
    Action.RELEASE_FOR_RETRY: lambda app, c: lifecycle.release_for_retry(app.sessions, c, [], 5, app.clock.now()),
    Action.RENEW: lambda app, c: lifecycle.renew(app.sessions, c, app.clock.now(), LEASE),
}


@pytest.mark.parametrize("action", list(WORKER_STEPS))
@pytest.mark.parametrize("status", list(Status))
def test_a_workers_step_follows_the_table(app: App, action: Action, status: Status) -> None:
    ticket_id = submit(app, f"{action}-{status}")
    lease = _held_claim(app, ticket_id, status)
    allowed = TRANSITIONS[action].get(status)
    if allowed is None:
        with pytest.raises(TransitionError) if action != Action.RENEW else _no_change():
            assert not WORKER_STEPS[action](app, lease)
        assert _status(app, ticket_id) == status
    else:
        assert WORKER_STEPS[action](app, lease)
        assert _status(app, ticket_id) == allowed.target


class _no_change:  # noqa: N801 (used like pytest.raises)
    """A renewal the table refuses is a lost claim: it returns False instead of raising."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return False


@pytest.mark.parametrize("action", [Action.LEASE, Action.LEASE_FALLBACK])
@pytest.mark.parametrize("status", list(Status))
def test_claims_follow_the_table_and_never_raise(app: App, action: Action, status: Status) -> None:
    ticket_id = submit(app, f"{action}-{status}")
    _force(app, ticket_id, status)
    take = lifecycle.lease if action == Action.LEASE else lifecycle.lease_fallback
    lease = take(app.sessions, ticket_id, app.clock.now(), LEASE)
    allowed = TRANSITIONS[action].get(status)
    assert (lease is not None) == (allowed is not None)
    assert _status(app, ticket_id) == (allowed.target if allowed else status)


@pytest.mark.parametrize("status", list(Status))
def test_the_sweep_poisons_only_where_the_table_allows(app: App, clock: ManualClock, status: Status) -> None:
    ticket_id = submit(app, f"poison-{status}")
    _force(app, ticket_id, status)
    dead_lease = {"lease_token": "dead", "lease_until": clock.now()} if status == Status.PROCESSING else {}
    with app.sessions.begin() as session:  # a worker died holding it (processing), or it waits
        session.execute(update(Ticket).where(Ticket.id == ticket_id).values(requeue_count=5, **dead_lease))
    clock.advance(hours=1)
    result = lifecycle.sweep(app.sessions, clock.now(), timedelta(minutes=15), 5, app.router.fallback,
                             outbox=app.outbox)
    expected = TRANSITIONS[Action.POISON].get(status)
    assert (ticket_id in result.poisoned) == (expected is not None)
    assert _status(app, ticket_id) == (expected.target if expected else status)


@pytest.mark.parametrize("status", list(Status))
def test_the_sweep_takes_back_a_dead_workers_ticket_only_where_the_table_allows(app: App, clock: ManualClock,
                                                                                status: Status) -> None:
    ticket_id = submit(app, f"requeue-{status}")
    lease = _held_claim(app, ticket_id, status)
    clock.advance(seconds=LEASE + 1)  # its worker died: nobody renewed the lease
    result = lifecycle.sweep(app.sessions, clock.now(), timedelta(minutes=15), 5, app.router.fallback(clock.now()),
                             outbox=app.outbox)
    expected = TRANSITIONS[Action.REQUEUE].get(status)
    assert (ticket_id in [t.ticket_id for t in result.requeued]) == (expected is not None)
    assert _status(app, ticket_id) == (expected.target if expected else status)
    if expected is not None:
        assert not lifecycle.renew(app.sessions, lease, clock.now(), LEASE), "the dead worker's lease is gone"


@pytest.mark.parametrize("status", list(Status))
def test_jobs_reextract_only_where_the_table_allows(app: App, status: Status) -> None:
    ticket_id = submit(app, f"reextract-{status}")
    _force(app, ticket_id, status)
    moved = lifecycle.reextract(app.sessions, ticket_id, EventKind.REPROCESS, app.clock.now(), only_from=list(Status),
                                outbox=app.outbox)
    assert moved == (status in TRANSITIONS[Action.REEXTRACT])


def test_every_action_and_status_is_in_the_pure_table() -> None:
    for action in Action:
        for status in Status:
            allowed = TRANSITIONS[action].get(status)
            if allowed is None:
                with pytest.raises(TransitionError, match=status.value):
                    transition(action, status)
            else:
                assert transition(action, status) == allowed


def test_a_lease_lasts_until_the_clock_passes_it_and_renewing_extends_it(app: App, clock: ManualClock) -> None:
    ticket_id = submit(app, "lease")
    lease = lifecycle.lease(app.sessions, ticket_id, clock.now(), LEASE)
    assert lease is not None
    assert lifecycle.lease(app.sessions, ticket_id, clock.advance(seconds=LEASE - 1), LEASE) is None
    assert lifecycle.renew(app.sessions, lease, clock.now(), LEASE)
    assert lifecycle.lease(app.sessions, ticket_id, clock.advance(seconds=LEASE - 1), LEASE) is None, "renewed"
    takeover = lifecycle.lease(app.sessions, ticket_id, clock.advance(seconds=2), LEASE)
    assert takeover is not None and takeover.run == lease.run
    assert not lifecycle.renew(app.sessions, lease, clock.now(), LEASE), "the old holder lost its lease"
    assert not lifecycle.release_for_retry(app.sessions, lease, [AttemptRecord(1, "m", "api_error")], 1, clock.now())


def test_every_audit_event_records_the_same_fields_before_and_after(app: App) -> None:
    ticket_id = submit(app, "audit")
    finish_with_rules(app, ticket_id)
    lifecycle.assign(app.sessions, ticket_id, "alice", app.clock.now(), outbox=app.outbox)
    fields = {"problem_type": "complaint", "device_model": None, "urgent_level": "high", "user_requirements": []}
    lifecycle.correct(app.sessions, ticket_id, "alice", fields, app.schema, app.router, app.clock.now(),
                      outbox=app.outbox)
    lifecycle.unassign(app.sessions, ticket_id, "alice", app.clock.now(), outbox=app.outbox)
    lifecycle.resolve(app.sessions, ticket_id, "bob", app.clock.now(), outbox=app.outbox)
    events = _events(app, ticket_id)
    assert [e.kind for e in events] == ["routed", "claimed", "corrected", "released", "resolved"]
    keys = {frozenset(e.before or {}) for e in events} | {frozenset(e.after or {}) for e in events}
    assert len(keys) == 1, "one snapshot for every event"
    assert events[2].before["route"] != events[2].after["route"] == "customer-relations"


def test_someone_elses_claim_is_a_conflict_and_only_the_holder_releases(app: App) -> None:
    ticket_id = submit(app, "claims")
    lifecycle.assign(app.sessions, ticket_id, "alice", app.clock.now(), outbox=app.outbox)
    lifecycle.assign(app.sessions, ticket_id, "alice", app.clock.now(), outbox=app.outbox)  # twice is fine
    with pytest.raises(lifecycle.AssignmentConflictError, match="claimed by alice"):
        lifecycle.assign(app.sessions, ticket_id, "bob", app.clock.now(), outbox=app.outbox)
    with pytest.raises(lifecycle.AssignmentConflictError, match="only the holder"):
        lifecycle.unassign(app.sessions, ticket_id, "bob", app.clock.now(), outbox=app.outbox)
    lifecycle.unassign(app.sessions, ticket_id, "alice", app.clock.now(), outbox=app.outbox)
    with pytest.raises(lifecycle.AssignmentConflictError, match="not claimed"):
        lifecycle.unassign(app.sessions, ticket_id, "alice", app.clock.now(), outbox=app.outbox)
    with pytest.raises(TicketNotFoundError):
        lifecycle.assign(app.sessions, 9999, "alice", app.clock.now(), outbox=app.outbox)


def test_a_resolved_ticket_reopens_on_a_new_message_even_after_a_correction(app: App) -> None:
    ticket_id = submit(app, "reopen")
    finish_with_rules(app, ticket_id)
    fields = {"problem_type": "consult", "device_model": None, "urgent_level": "low", "user_requirements": []}
    lifecycle.correct(app.sessions, ticket_id, "alice", fields, app.schema, app.router, app.clock.now(),
                      outbox=app.outbox)
    again = receive(app.sessions, "shop", "reopen", Conversation.from_text("still broken"), ["message:2"],
                    app.clock.now(), outbox=app.outbox)
    assert (again.status, again.enqueue) == ("corrected", False), "open and corrected: appended only"
    lifecycle.resolve(app.sessions, ticket_id, "alice", app.clock.now(), outbox=app.outbox)
    reopened = receive(app.sessions, "shop", "reopen", Conversation.from_text("broken again"), ["message:3"],
                       app.clock.now(), outbox=app.outbox)
    assert (reopened.status, reopened.enqueue) == ("queued", True)
    with app.sessions() as session:
        ticket = session.get_one(Ticket, ticket_id)
        assert (ticket.run, ticket.resolved_at) == (2, None)
    assert _events(app, ticket_id)[-1].kind == EventKind.REOPENED


def test_a_flag_is_stored_with_its_detail_and_shown_in_the_ticket_detail(app: App) -> None:
    ticket_id = submit(app, "flagged")
    with app.sessions.begin() as session:
        lifecycle.flag(session.get_one(Ticket, ticket_id), Flag.INJECTION_SUSPECTED, {"pattern": "ignore_previous"})
    with app.sessions.begin() as session:
        lifecycle.flag(session.get_one(Ticket, ticket_id), Flag.TEXT_REPAIRED)
    detail = ticket_detail(app.sessions, ticket_id)
    assert detail is not None
    assert detail["ticket"]["flags"] == {"injection_suspected": {"pattern": "ignore_previous"}, "text_repaired": {}}


def test_a_killed_workers_ticket_is_back_once_its_lease_ends_not_after_the_queued_threshold(
        app: App, clock: ManualClock) -> None:
    ticket_id = submit(app, "killed")
    assert lifecycle.lease(app.sessions, ticket_id, clock.now(), LEASE) is not None  # then kill -9: no renewals
    threshold = timedelta(minutes=15)  # worker.stuck_after_seconds: for queued tickets only

    def sweep() -> lifecycle.Sweep:
        return lifecycle.sweep(app.sessions, clock.now(), threshold, 5, app.router.fallback(clock.now()),
                               outbox=app.outbox)

    assert sweep().requeued == [], "the lease is still running"
    clock.advance(seconds=LEASE + 1)
    assert sweep().requeued == [lifecycle.StuckTicket(ticket_id, Status.QUEUED)]
    assert sweep().requeued == [], "published once; now it waits in the queue like any other"
    again = lifecycle.lease(app.sessions, ticket_id, clock.now(), LEASE)
    assert again is not None and again.run == 1
    with app.sessions() as session:
        assert session.get_one(Ticket, ticket_id).requeue_count == 1


def test_a_queued_backlog_is_not_republished_before_the_threshold(app: App, clock: ManualClock) -> None:
    ids = [submit(app, f"backlog-{n}") for n in range(3)]
    clock.advance(minutes=14)
    sweep = lifecycle.sweep(app.sessions, clock.now(), timedelta(minutes=15), 5, app.router.fallback(clock.now()),
                            outbox=app.outbox)
    assert sweep.requeued == [] and sweep.poisoned == []
    clock.advance(minutes=2)
    sweep = lifecycle.sweep(app.sessions, clock.now(), timedelta(minutes=15), 5, app.router.fallback(clock.now()),
                            outbox=app.outbox)
    assert sorted(t.ticket_id for t in sweep.requeued) == ids


def test_a_sweep_that_finds_nothing_is_one_query(app: App, clock: ManualClock) -> None:
    for n in range(3):
        submit(app, f"fresh-{n}")
    with count_statements(app.engine) as statements:
        result = lifecycle.sweep(app.sessions, clock.now(), timedelta(minutes=15), 5, app.router.fallback(clock.now()),
                                 outbox=app.outbox)
    assert result.requeued == [] and result.poisoned == []
    assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) == 1, statements


def test_holding_for_review_keeps_the_models_fields_and_records_the_flag(app: App) -> None:
    ticket_id = submit(app, "held")
    lease = lifecycle.lease(app.sessions, ticket_id, app.clock.now(), LEASE)
    assert lease is not None
    fields = {"problem_type": "complaint", "device_model": None, "urgent_level": "high", "user_requirements": []}
    attempt = AttemptRecord(1, "mimo-v2-flash", "valid", raw_output="{...}", parse_path="tolerant",
                            repairs=("fence", "last_of_2"))
    result = ExtractionResult("llm", fields, [attempt], injection=InjectionMatch("ignore-instructions", "ignore all"))
    assert lifecycle.hold_for_review(app.sessions, lease, result, app.router.fallback(app.clock.now()),
                                     FallbackReason.INJECTION_SUSPECTED, "held: P1", app.clock.now(), outbox=app.outbox)
    detail = ticket_detail(app.sessions, ticket_id)
    assert detail is not None
    ticket = detail["ticket"]
    assert (ticket["status"], ticket["route"], ticket["fallback_reason"], ticket["extractor"]) == (
        "needs_review", "manual-review", "injection_suspected", "llm")
    assert ticket["fields"] == fields
    assert ticket["flags"] == {"injection_suspected": {"pattern": "ignore-instructions", "text": "ignore all"}}
    assert [(a["parse_path"], a["repairs"]) for a in detail["attempts"]] == [("tolerant", ["fence", "last_of_2"])]
    assert [e["kind"] for e in detail["events"]] == ["needs_review"]


def test_attempts_keep_their_parse_path_and_repairs_across_a_retry(app: App) -> None:
    ticket_id = submit(app, "retried")
    lease = lifecycle.lease(app.sessions, ticket_id, app.clock.now(), LEASE)
    assert lease is not None
    made = [AttemptRecord(1, "m", "ambiguous", raw_output="{} {}", parse_path="tolerant", repairs=("prose",)),
            AttemptRecord(2, "m", "api_error", status_code=503)]
    assert lifecycle.release_for_retry(app.sessions, lease, made, 0, app.clock.now())
    again = lifecycle.lease(app.sessions, ticket_id, app.clock.now(), LEASE)
    assert again is not None and again.prior_attempts == made
