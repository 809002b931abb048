"""Every change of a ticket's status, its lease and its audit trail: the only writer of ``tickets.status``.

Each public function is one short transaction and takes ``now`` from the application's clock.
A worker's steps (:func:`lease`, :func:`renew`, :func:`finish` and the other ends of a run) are the
hot path: Core statements only, no ORM objects (a lease is an ``UPDATE ... RETURNING`` and one
read; an end is a locking read, one multi-row ``INSERT`` of the attempts, one ``UPDATE`` and the
audit event), and each is run once more when its connection turned out dead
(:func:`~triage.store.db.retry_disconnect`).
Automatic steps hold a *lease*: :func:`lease` hands a worker a token with a deadline, and every
later write of that run is conditional on the token, so a redelivered message, a duplicate, or a
worker whose lease ran out cannot overwrite a finished ticket. A person's actions lock the row,
then check who holds the ticket (someone else's assignment raises :class:`AssignmentConflictError`), what the
correction's fields are worth (:func:`corrected_fields`) and :data:`~triage.states.tickets.TRANSITIONS`
(a transition the table does not hold raises :class:`~triage.states.tickets.TransitionError`), all under
that lock: the API and the desk only call them. Every change that matters to people writes an
audit :class:`~triage.store.models.Event` whose before and after come from :func:`snapshot`, and in the
same transaction the outbox's deliveries that decision needs (write-back, events, alerts:
:meth:`~triage.outbox.outbox.Outbox.record_decision`, published only after the commit). Every function that
records a decision requires the :class:`~triage.outbox.outbox.Outbox` it records into (``outbox=app.outbox``):
there is no decision without its deliveries::

    lease = lifecycle.lease(sessions, ticket_id, now, lease_seconds=60)
    if lease is not None:  # None: finished, or another worker holds it
        ...
        lifecycle.finish(sessions, lease, result, decision, now, outbox=app.outbox)
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    FromClause,
    Integer,
    Row,
    RowMapping,
    Update,
    and_,
    bindparam,
    exists,
    func,
    insert,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.orm import Session, sessionmaker

from triage.conversation import Conversation
from triage.errors import ConflictError, RejectedError
from triage.extraction.injection import InjectionMatch
from triage.extraction.types import Attempt as AttemptRecord
from triage.extraction.types import ExtractionResult
from triage.outbox.outbox import Outbox
from triage.schema import TicketSchema, ValidationIssue
from triage.states.autonomy import Level
from triage.states.tickets import (
    HUMAN_EXTRACTOR,
    TRANSITIONS,
    Action,
    AttemptOutcome,
    EventKind,
    FallbackReason,
    Flag,
    Status,
    Transition,
    single_target,
    sources,
    transition,
)
from triage.store import search
from triage.store.db import changed_rows, retry_disconnect
from triage.store.models import ATTEMPTS, CONVERSATIONS, EVENTS, TICKETS, Event, Ticket
from triage.store.queries import TicketNotFoundError
from triage.tickets.routing import RouteDecision, Router

WORKER_ACTOR = "worker"
INTAKE_ACTOR = "intake"


class AssignmentConflictError(ConflictError):
    """Someone else holds the ticket (or nobody does, for a release); ``holder`` names who holds it."""

    def __init__(self, message: str, holder: str | None) -> None:
        super().__init__(message)
        self.holder = holder


class CorrectionRejectedError(RejectedError):
    """A correction the ticket schema refuses: fields it does not define (``unknown``), required fields the
    corrected ticket would lack (``missing``), and every schema error with its path (``issues``)."""

    def __init__(self, message: str, *, unknown: Sequence[str] = (), missing: Sequence[str] = (),
                 issues: Sequence[ValidationIssue] = ()) -> None:
        super().__init__(message)
        self.unknown, self.missing, self.issues = list(unknown), list(missing), list(issues)

    def detail(self) -> dict[str, Any]:
        """The refusal as the API answers it: ``message`` and, where there are any, ``fields``, ``missing``
        and ``errors`` (each ``{"path", "message"}``)."""
        answer: dict[str, Any] = {"message": str(self)}
        if self.unknown:
            answer["fields"] = self.unknown
        if self.missing:
            answer["missing"] = self.missing
        if self.issues:
            answer["errors"] = [{"path": issue.path, "message": issue.message} for issue in self.issues]
        return answer


@dataclass(frozen=True)
class Lease:
    """A worker's hold on a ticket for one extraction run: its conversation and the run's earlier attempts."""

    ticket_id: int
    token: str
    run: int
    conversation: Conversation
    prior_attempts: list[AttemptRecord]
    #: The start of the ticket's SLA: routing counts the due time from here, not from when the run ends.
    sla_started_at: datetime


#: The ticket columns every audit event records, before and after the change.
SNAPSHOT_COLUMNS = ("status", "fields", "route", "priority", "sla_due_at", "extractor", "model", "schema_version",
                    "prompt_version", "assigned_to", "fallback_reason", "autonomy", "confidence", "field_confidence")


def snapshot_of(values: Mapping[str, Any]) -> dict[str, Any]:
    """What every audit event records, from a ticket's column values (at least :data:`SNAPSHOT_COLUMNS`)."""
    recorded = {name: values[name] for name in SNAPSHOT_COLUMNS}
    due = recorded["sla_due_at"]
    recorded["sla_due_at"] = due.isoformat() if due else None
    return recorded


def snapshot(ticket: Ticket) -> dict[str, Any]:
    """What every audit event records, before and after the change."""
    return snapshot_of({name: getattr(ticket, name) for name in SNAPSHOT_COLUMNS})


# ---- the lease ----------------------------------------------------------------------------------

def _grant_lease(now: datetime, seconds: float) -> dict[str, Any]:
    """The column values of a new lease (for a conditional UPDATE)."""
    return {"lease_token": str(uuid.uuid4()), "lease_until": now + timedelta(seconds=seconds)}


def _drop_lease(ticket: Ticket) -> None:
    """End the current run's hold and any scheduled retry."""
    ticket.lease_token = ticket.lease_until = ticket.next_attempt_at = None


def _lease_free(now: datetime | ColumnElement[datetime], tickets: FromClause = TICKETS) -> ColumnElement[bool]:
    """Nobody holds a live lease on the ticket (of ``tickets``: the table or an alias of it)."""
    return or_(tickets.c.lease_until.is_(None), tickets.c.lease_until < now)


# ---- shared steps -------------------------------------------------------------------------------

def _apply(ticket: Ticket, action: Action, now: datetime) -> Transition:
    """Move ``ticket`` as the table says (raising when it may not); a new run drops the old run's lease."""
    step = transition(action, ticket.status)
    ticket.status = step.target
    ticket.updated_at = now
    if step.new_run:
        ticket.run += 1
        _drop_lease(ticket)
        ticket.fallback_reason = ticket.fallback_detail = ticket.fallback_raw_output = None
        ticket.confidence = ticket.field_confidence = ticket.autonomy = None  # the new run decides them again
    return step


def _audit(session: Session, outbox: Outbox, ticket: Ticket, actor: str, kind: EventKind, before: dict[str, Any],
           now: datetime) -> None:
    """The audit event of a decision, and in the same transaction the outbox's deliveries it needs."""
    audit = Event(ticket=ticket, actor=actor, kind=kind, before=before, after=snapshot(ticket), created_at=now)
    session.add(audit)
    outbox.record_decision(session, ticket, audit, before, now)


def _locked(session: Session, ticket_id: int) -> Ticket:
    ticket = session.execute(select(Ticket).where(Ticket.id == ticket_id).with_for_update()).scalar_one_or_none()
    if ticket is None:
        raise TicketNotFoundError(ticket_id)
    return ticket


#: What a run's end reads of its ticket (locked): the audit snapshot and what the new values derive from.
_HELD = (*(TICKETS.c[name] for name in SNAPSHOT_COLUMNS), TICKETS.c.flags, TICKETS.c.trimmed,
         CONVERSATIONS.c.source, CONVERSATIONS.c.external_id, CONVERSATIONS.c.messages)
#: An attempt's columns that :class:`~triage.extraction.types.Attempt` records.
_ATTEMPT_COLUMNS = ("n", "model", "outcome", "raw_output", "finish_reason", "error", "status_code", "prompt_tokens",
                    "completion_tokens", "reasoning_tokens", "latency_ms", "max_completion_tokens", "parse_path",
                    "batch_id", "batch_size")


def _attempt_rows(lease: Lease, attempts: Sequence[AttemptRecord], now: datetime,
                  scored: ExtractionResult | None = None) -> list[dict[str, Any]]:
    """The attempts' rows; the one whose answer decided ``scored`` (its last valid attempt) with its confidence."""
    deciding = (next((a for a in reversed(attempts) if a.outcome == AttemptOutcome.VALID), None)
                if scored is not None else None)
    return [{"ticket_id": lease.ticket_id, "run": lease.run, "created_at": now, "repairs": list(a.repairs),
             "confidence": scored.ticket_confidence if scored is not None and a is deciding else None,
             "field_confidence": scored.field_confidence if scored is not None and a is deciding else None,
             **{name: getattr(a, name) for name in _ATTEMPT_COLUMNS}} for a in attempts]


def _to_record(values: RowMapping) -> AttemptRecord:
    return AttemptRecord(**{name: values[name] for name in _ATTEMPT_COLUMNS}, repairs=tuple(values["repairs"] or ()))


def _result_values(held: Row[Any], result: ExtractionResult, decision: RouteDecision, now: datetime) -> dict[str, Any]:
    """The columns a stored extraction sets (its fields, route and versions; the search text follows the fields)."""
    fields = result.ticket or {}
    return {"fields": fields, "extractor": result.extractor, "model": result.model or held.model,
            "schema_version": result.schema_version, "prompt_version": result.prompt_version,
            "trimmed": held.trimmed or result.trimmed, "flags": with_injection(held.flags, result.injection),
            "search_text": search.search_text(held.external_id, held.messages or [], fields),
            "dedupe_key": result.dedupe_key, "dedupe_of": result.dedupe_of, "confidence": result.ticket_confidence,
            "field_confidence": result.field_confidence, "confidence_signals": result.confidence_signals,
            **_route_values(decision, now)}


def _route_values(decision: RouteDecision, now: datetime) -> dict[str, Any]:
    return {"route": decision.route, "priority": decision.priority, "sla_due_at": decision.sla_due_at,
            "finished_at": now}


@retry_disconnect
def _end_run(sessions: sessionmaker[Session], lease: Lease, action: Action, now: datetime, *,
             attempts: Sequence[AttemptRecord], audit: tuple[EventKind, Outbox] | None,
             values: Callable[[Row[Any]], dict[str, Any]], scored: ExtractionResult | None = None) -> bool:
    """End ``lease``'s run with ``action`` in one short transaction: lock the ticket if the lease still holds it,
    add ``attempts`` (one statement; the one that decided ``scored`` with its confidence), drop the lease and set
    ``values(held row)``, and, for ``audit`` (a kind and the outbox), audit it as that kind with its deliveries."""
    with sessions.begin() as session:
        held = session.execute(
            select(*_HELD).select_from(TICKETS.join(CONVERSATIONS, CONVERSATIONS.c.id == TICKETS.c.conversation_id))
            .where(TICKETS.c.id == lease.ticket_id, TICKETS.c.lease_token == lease.token).with_for_update(of=TICKETS)
        ).first()
        if held is None:
            return False
        changes = {"status": transition(action, held.status).target, "updated_at": now, "lease_token": None,
                   "lease_until": None, "next_attempt_at": None, **values(held)}
        if attempts:
            session.execute(insert(ATTEMPTS), _attempt_rows(lease, attempts, now, scored))
        session.execute(update(TICKETS).where(TICKETS.c.id == lease.ticket_id).values(changes))
        if audit is not None:
            kind, outbox = audit
            before = snapshot_of(dict(held._mapping))
            after = snapshot_of({**held._mapping, **changes})
            event_id = session.execute(
                insert(EVENTS).values(ticket_id=lease.ticket_id, actor=WORKER_ACTOR, kind=kind, before=before,
                                  after=after, created_at=now).returning(EVENTS.c.id)).scalar_one()
            outbox.record_run_decision(session, lease.ticket_id, event_id, kind, held.source, before, after, now)
        return True


def with_flag(flags: Mapping[str, Any] | None, name: Flag, detail: dict[str, Any] | None = None) -> dict[str, Any]:
    """``flags`` with ``name`` set to its ``detail`` (a flag stays once set)."""
    return {**(flags or {}), name.value: detail or {}}


def flag(ticket: Ticket, name: Flag, detail: dict[str, Any] | None = None) -> None:
    """Record ``name`` on the ticket with its ``detail``."""
    ticket.flags = with_flag(ticket.flags, name, detail)


def with_injection(flags: Mapping[str, Any] | None, match: InjectionMatch | None) -> dict[str, Any]:
    """``flags`` with ``injection_suspected`` (the matched pattern and text) when there is a match."""
    return with_flag(flags, Flag.INJECTION_SUSPECTED, match.to_dict()) if match is not None else dict(flags or {})


# ---- birth and new messages (in the intake's transaction) ----------------------------------------

def wait_began(sent_at: datetime | None, now: datetime) -> datetime:
    """When the customer started waiting: the platform's time for the message, never later than ``now``
    (a sender's clock may run ahead), else ``now``."""
    return min(sent_at, now) if sent_at is not None else now


def new_ticket(external_id: str, messages: Sequence[Mapping[str, Any]], now: datetime,
               sent_at: datetime | None = None, flags: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The column values of a new ``queued`` ticket for a new conversation (``external_id``, ``messages``), its SLA
    counting from ``sent_at``, the platform's time for the first customer message, when given."""
    return {"status": Status.QUEUED, "run": 1, "created_at": now, "updated_at": now, "flags": dict(flags or {}),
            "sla_started_at": wait_began(sent_at, now), "search_text": search.search_text(external_id, messages, None)}


def append_message(session: Session, ticket: Ticket, now: datetime, sent_at: datetime | None = None, *,
                   outbox: Outbox) -> bool:
    """The customer wrote again (the caller already stored the text): ``True`` when a new extraction
    run starts and must be published after the commit.

    A ``resolved`` ticket reopens, its SLA counting again from this message (``sent_at``, else ``now``);
    an open ``corrected`` one keeps the person's fields; a ``queued`` one's coming extraction reads the
    new text anyway.
    """
    search.refresh(ticket)
    before = snapshot(ticket)
    reopening = ticket.status == Status.RESOLVED
    step = _apply(ticket, Action.APPEND_MESSAGE, now)
    if not step.new_run:
        return False
    if reopening:
        ticket.resolved_at = None
        ticket.sla_started_at = wait_began(sent_at, now)
    kind = EventKind.REOPENED if reopening else EventKind.NEW_MESSAGE
    _audit(session, outbox, ticket, INTAKE_ACTOR, kind, before, now)
    return True


# ---- a worker's run -------------------------------------------------------------------------------

@retry_disconnect
def _lease(sessions: sessionmaker[Session], ticket_id: int, action: Action, now: datetime,
           lease_seconds: float) -> Lease | None:
    """One conditional ``UPDATE ... RETURNING`` takes the lease; one read brings the conversation and the run's
    earlier attempts (an outer join: a first run has none)."""
    with sessions.begin() as session:
        changed = session.execute(
            update(TICKETS)
            .where(TICKETS.c.id == ticket_id, TICKETS.c.status.in_(sources(action)), _lease_free(now))
            .values(status=single_target(action), updated_at=now, **_grant_lease(now, lease_seconds))
            .returning(TICKETS.c.lease_token, TICKETS.c.run, TICKETS.c.sla_started_at, TICKETS.c.conversation_id)
        ).first()
        if changed is None:
            return None
        rows = session.execute(
            select(CONVERSATIONS.c.messages, *(ATTEMPTS.c[name] for name in _ATTEMPT_COLUMNS), ATTEMPTS.c.repairs)
            .select_from(CONVERSATIONS)
            .outerjoin(ATTEMPTS, and_(ATTEMPTS.c.ticket_id == ticket_id, ATTEMPTS.c.run == changed.run))
            .where(CONVERSATIONS.c.id == changed.conversation_id).order_by(ATTEMPTS.c.id)
        ).all()
        prior = [_to_record(row._mapping) for row in rows if row.n is not None]
        return Lease(ticket_id, str(changed.lease_token), changed.run, Conversation.from_dicts(rows[0].messages),
                     prior, changed.sla_started_at)


def lease(sessions: sessionmaker[Session], ticket_id: int, now: datetime, lease_seconds: float) -> Lease | None:
    """Move a ``queued`` ticket (or a ``processing`` one whose lease ran out) to ``processing`` under a
    new lease; ``None`` when it is finished or leased to another run (a redelivered message then changes
    nothing). A row lock held for the moment (intake appending a message, a person's action) is waited for:
    the conditional ``UPDATE`` reads the row as that transaction left it."""
    return _lease(sessions, ticket_id, Action.LEASE, now, lease_seconds)


def lease_fallback(sessions: sessionmaker[Session], ticket_id: int, now: datetime,
                   lease_seconds: float) -> Lease | None:
    """Hold a ``fallback`` ticket for the fallback task (it stays ``fallback`` until finished)."""
    return _lease(sessions, ticket_id, Action.LEASE_FALLBACK, now, lease_seconds)


def _batchable(now: datetime | ColumnElement[datetime], tickets: FromClause = TICKETS) -> ColumnElement[bool]:
    """A ticket another ticket's run may take into its batch: leasable now, and no retry scheduled later."""
    return and_(tickets.c.status.in_(sources(Action.LEASE)), _lease_free(now, tickets),
                or_(tickets.c.next_attempt_at.is_(None), tickets.c.next_attempt_at <= now))


@functools.cache
def _batch_lease(counted: bool) -> Update:
    """:func:`lease_batch`'s one statement, built once and bound at each call (:func:`_batch_lease_values`):
    CTEs with their subqueries cost far more CPU to build than to run.

    ``own`` locks the run's own ticket if it is leasable, *waiting* for a lock someone holds for the moment
    (intake appending a message, a person's action); PostgreSQL then reads the row as that transaction left it.
    Skipping it instead would read a ticket intake is appending to as held elsewhere, and its message would be
    spent with the ticket left ``queued``. ``companions``, only when ``own`` was leasable, are other leasable
    tickets, oldest first, skipping rows another worker is leasing (``SKIP LOCKED``: any of them will do).
    ``counted``: companions are taken only when more than ``:beyond`` others wait, an uncorrelated subquery
    (run once) reading at most ``:beyond + 1`` ids; without it, whenever a companion is found."""
    ticket_id, now = bindparam("ticket_id", type_=Integer), bindparam("now", type_=TICKETS.c.updated_at.type)
    enough: ColumnElement[bool] = true()
    if counted:
        other = TICKETS.alias("waiting")
        waiting = (select(other.c.id).where(other.c.id != ticket_id, _batchable(now, other))
                   .limit(bindparam("waiting_limit", type_=Integer)).subquery())
        enough = select(func.count()).select_from(waiting).scalar_subquery() > bindparam("beyond", type_=Integer)
    own = (select(TICKETS.c.id)
           .where(TICKETS.c.id == ticket_id, TICKETS.c.status.in_(sources(Action.LEASE)), _lease_free(now))
           .with_for_update().cte("own"))
    companions = (select(TICKETS.c.id)
                  .where(TICKETS.c.id != ticket_id, _batchable(now), exists(select(own.c.id)), enough)
                  .order_by(TICKETS.c.id).limit(bindparam("companions", type_=Integer))
                  .with_for_update(skip_locked=True)
                  .cte("companions"))  # a CTE runs once: PostgreSQL may run an IN subquery again, past its LIMIT
    chosen = select(own.c.id).union_all(select(companions.c.id))
    return (update(TICKETS)
            .where(TICKETS.c.id.in_(chosen), TICKETS.c.status.in_(sources(Action.LEASE)), _lease_free(now))
            .values(status=single_target(Action.LEASE), updated_at=now,
                    lease_token=bindparam("new_lease_token", type_=TICKETS.c.lease_token.type),
                    lease_until=bindparam("new_lease_until", type_=TICKETS.c.lease_until.type))
            .returning(TICKETS.c.id, TICKETS.c.lease_token, TICKETS.c.run, TICKETS.c.sla_started_at,
                       TICKETS.c.conversation_id))


def _batch_lease_values(ticket_id: int, size: int, now: datetime, lease_seconds: float, beyond: int) -> dict[str, Any]:
    lease = _grant_lease(now, lease_seconds)
    values = {"ticket_id": ticket_id, "now": now, "companions": size - 1, "new_lease_token": lease["lease_token"],
              "new_lease_until": lease["lease_until"]}
    return values | ({"beyond": beyond, "waiting_limit": beyond + 1} if beyond else {})


@retry_disconnect
def lease_batch(sessions: sessionmaker[Session], ticket_id: int, size: int, now: datetime,
                lease_seconds: float, *, beyond: int = 0) -> list[Lease]:
    """:func:`lease` ``ticket_id`` and, in the same statement, up to ``size - 1`` other leasable tickets
    (oldest first; on PostgreSQL rows another worker is leasing are skipped), all under one new lease;
    the others only when more than ``beyond`` wait (``auto`` batching's test, asked in the same statement:
    with fewer, ``ticket_id`` is leased alone).

    ``ticket_id``'s lease comes first; nothing is leased (``[]``) when ``ticket_id`` itself is not
    leasable: finished, or leased to another run. A lock someone holds on it for the moment is waited
    for, as :func:`lease`'s ``UPDATE`` waits. The other tickets' own messages then find them leased (or
    finished) and do nothing.
    """
    with sessions.begin() as session:
        rows = session.execute(_batch_lease(beyond > 0),
                               _batch_lease_values(ticket_id, size, now, lease_seconds, beyond)).all()
        if not rows:
            return []
        messages: dict[int, list[Any]] = {
            conversation.id: conversation.messages for conversation in session.execute(
                select(CONVERSATIONS.c.id, CONVERSATIONS.c.messages)
                .where(CONVERSATIONS.c.id.in_([row.conversation_id for row in rows])))}
        runs = {row.id: row.run for row in rows}
        prior: dict[int, list[AttemptRecord]] = {row.id: [] for row in rows}
        for attempt in session.execute(select(ATTEMPTS).where(ATTEMPTS.c.ticket_id.in_(runs))
                                       .order_by(ATTEMPTS.c.id)):
            if attempt.run == runs[attempt.ticket_id]:
                prior[attempt.ticket_id].append(_to_record(attempt._mapping))
    leases = [Lease(row.id, str(row.lease_token), row.run, Conversation.from_dicts(messages[row.conversation_id]),
                    prior[row.id], row.sla_started_at) for row in rows]
    return sorted(leases, key=lambda lease: (lease.ticket_id != ticket_id, lease.ticket_id))


@retry_disconnect
def renew_batch(sessions: sessionmaker[Session], leases: Sequence[Lease], now: datetime,
                lease_seconds: float) -> int:
    """:func:`renew` every lease of a batch in one statement; how many are still held."""
    with sessions.begin() as session:
        return changed_rows(session.execute(
            update(TICKETS)
            .where(TICKETS.c.id.in_([lease.ticket_id for lease in leases]),
                   TICKETS.c.lease_token.in_({lease.token for lease in leases}),
                   TICKETS.c.status.in_(sources(Action.RENEW)))
            .values(lease_until=now + timedelta(seconds=lease_seconds))
        ))


@retry_disconnect
def renew(sessions: sessionmaker[Session], lease: Lease, now: datetime, lease_seconds: float) -> bool:
    """Extend the lease while the worker still works on the ticket; ``False`` when the lease was lost."""
    with sessions.begin() as session:
        changed = changed_rows(session.execute(
            update(TICKETS)
            .where(TICKETS.c.id == lease.ticket_id, TICKETS.c.lease_token == lease.token,
                   TICKETS.c.status.in_(sources(Action.RENEW)))
            .values(lease_until=now + timedelta(seconds=lease_seconds))
        ))
    return bool(changed)


def finish(sessions: sessionmaker[Session], lease: Lease, result: ExtractionResult, decision: RouteDecision,
           now: datetime, autonomy: Level = Level.AUTO, *, outbox: Outbox) -> bool:
    """Store a valid extraction, its attempts and its route (``routed``) with the autonomy level that applies
    (what the outbox writes back: :mod:`triage.outbox.rules`); ``False`` when the lease was lost."""
    return _finish(sessions, lease, result, decision, now, Action.FINISH, (EventKind.ROUTED, outbox), autonomy)


def finish_fallback(sessions: sessionmaker[Session], lease: Lease, result: ExtractionResult,
                    decision: RouteDecision, now: datetime, *, outbox: Outbox) -> bool:
    """Store the fallback queue's rules ticket for a person (``needs_review`` on the fallback route)."""
    return _finish(sessions, lease, result, decision, now, Action.FINISH_FALLBACK, (EventKind.NEEDS_REVIEW, outbox),
                   Level.REVIEW)


def _finish(sessions: sessionmaker[Session], lease: Lease, result: ExtractionResult, decision: RouteDecision,
            now: datetime, action: Action, audit: tuple[EventKind, Outbox], autonomy: Level) -> bool:
    return _end_run(sessions, lease, action, now, attempts=result.attempts, audit=audit,
                    values=lambda held: {**_result_values(held, result, decision, now), "autonomy": autonomy},
                    scored=result)


def hold_for_review(sessions: sessionmaker[Session], lease: Lease, result: ExtractionResult, decision: RouteDecision,
                    reason: FallbackReason, detail: str, now: datetime, *, outbox: Outbox) -> bool:
    """Store the model's valid ticket, fields and all, but for a person: ``needs_review`` on ``decision``
    (the fallback route) with ``reason``, instead of the route the fields give (autonomy ``review``: the
    review route's mapping is written back); ``False`` when the lease was lost."""
    return _end_run(sessions, lease, Action.HOLD_FOR_REVIEW, now, attempts=result.attempts,
                    audit=(EventKind.NEEDS_REVIEW, outbox),
                    values=lambda held: {**_result_values(held, result, decision, now), "fallback_reason": reason,
                                         "fallback_detail": detail, "autonomy": Level.REVIEW}, scored=result)


def send_to_fallback(sessions: sessionmaker[Session], lease: Lease, attempts: Sequence[AttemptRecord],
                     reason: FallbackReason, detail: str | None, now: datetime, *, outbox: Outbox,
                     trimmed: bool = False, injection: InjectionMatch | None = None) -> bool:
    """Record the failed attempts and mark the ticket ``fallback`` (the caller then publishes the fallback task)."""
    raw = next((a.raw_output for a in reversed([*lease.prior_attempts, *attempts]) if a.raw_output), None)
    return _end_run(sessions, lease, Action.SEND_TO_FALLBACK, now, attempts=attempts,
                    audit=(EventKind.FALLBACK, outbox),
                    values=lambda held: {"fallback_reason": reason, "fallback_detail": detail,
                                         "fallback_raw_output": raw, "trimmed": held.trimmed or trimmed,
                                         "flags": with_injection(held.flags, injection)})


def abandon_fallback(sessions: sessionmaker[Session], lease: Lease, reason: FallbackReason, detail: str,
                     decision: RouteDecision, now: datetime, *, outbox: Outbox) -> bool:
    """The fallback task itself failed: the ticket goes to a person as it is (``needs_review`` on
    ``decision``'s route, its fields unchanged) with ``reason`` and ``detail``."""
    return _end_run(sessions, lease, Action.FINISH_FALLBACK, now, attempts=(),
                    audit=(EventKind.NEEDS_REVIEW, outbox),
                    values=lambda _held: {"fallback_reason": reason, "fallback_detail": detail,
                                          "autonomy": Level.REVIEW, **_route_values(decision, now)})


def release_for_retry(sessions: sessionmaker[Session], lease: Lease, attempts: Sequence[AttemptRecord],
                      countdown: float, now: datetime) -> bool:
    """Record the attempts and put the ticket back to ``queued`` until its retry is due."""
    return _end_run(sessions, lease, Action.RELEASE_FOR_RETRY, now, attempts=attempts, audit=None,
                    values=lambda _held: {"next_attempt_at": now + timedelta(seconds=countdown)})


# ---- the sweep ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class StuckTicket:
    ticket_id: int
    status: Status


@dataclass(frozen=True)
class Sweep:
    requeued: list[StuckTicket]
    poisoned: list[int]


def sweep(sessions: sessionmaker[Session], now: datetime, older_than: timedelta, max_requeues: int,
          poison_route: Callable[[datetime], RouteDecision], *, outbox: Outbox) -> Sweep:
    """Tickets to publish again: ``processing``/``fallback`` ones whose worker's lease ran out (its
    worker died: they are taken back at once), and ``queued``/``fallback`` ones nobody holds that have
    waited longer than ``older_than`` (a lost message; a long backlog is younger than that).

    One query over two indexes ((status, lease_until) and (status, updated_at)), so a sweep that
    finds nothing is cheap. A ticket whose lease ran out loses it (``processing`` goes back to
    ``queued``); each one's ``updated_at`` is bumped and ``requeue_count`` incremented in the same
    transaction, so it is handed out once per threshold; the caller re-publishes them. A ticket
    already re-enqueued ``max_requeues`` times goes to ``needs_review`` with reason ``poison`` instead,
    on the route ``poison_route`` gives for the ticket's SLA start (``router.fallback``).
    """
    cutoff = now - older_than
    due = or_(Ticket.next_attempt_at.is_(None), Ticket.next_attempt_at < cutoff)
    waiting = and_(Ticket.status.in_((Status.QUEUED, Status.FALLBACK)), Ticket.lease_token.is_(None),
                   Ticket.updated_at < cutoff, due)
    abandoned = and_(Ticket.status.in_(sources(Action.REQUEUE)), Ticket.lease_until < now)
    with sessions.begin() as session:
        rows = session.scalars(select(Ticket).where(or_(waiting, abandoned)).with_for_update(skip_locked=True)).all()
        requeued, poisoned = [], []
        for ticket in rows:
            if ticket.requeue_count >= max_requeues:
                _poison(session, outbox, ticket, poison_route, now)
                poisoned.append(ticket.id)
                continue
            if ticket.lease_token is not None:  # its worker's lease ran out
                _apply(ticket, Action.REQUEUE, now)
                _drop_lease(ticket)
            requeued.append(StuckTicket(ticket.id, Status(ticket.status)))
            ticket.updated_at, ticket.requeue_count = now, ticket.requeue_count + 1
    return Sweep(requeued, poisoned)


def _poison(session: Session, outbox: Outbox, ticket: Ticket, route: Callable[[datetime], RouteDecision],
            now: datetime) -> None:
    decision = route(ticket.sla_started_at)
    before = snapshot(ticket)
    _apply(ticket, Action.POISON, now)
    ticket.fallback_reason = FallbackReason.POISON
    ticket.fallback_detail = f"re-enqueued {ticket.requeue_count} times without finishing"
    ticket.route, ticket.priority, ticket.sla_due_at = decision.route, decision.priority, decision.sla_due_at
    ticket.autonomy = Level.REVIEW
    _drop_lease(ticket)
    ticket.finished_at = now
    _audit(session, outbox, ticket, WORKER_ACTOR, EventKind.NEEDS_REVIEW, before, now)


# ---- a person's actions ---------------------------------------------------------------------------
#
# Who may act is decided here, on the row locked for the change: a ticket someone holds (the desk's
# "Claim", ``POST /tickets/{id}/claim``: an assignment) is theirs to correct, resolve, reprocess and release; anyone may
# act on a ticket nobody holds. Every surface (the API, the desk) calls these functions and shows their
# refusal; none checks anything itself first.

def permitted(action: Action, status: str, holder: str | None, actor: str) -> bool:
    """Whether ``actor`` may take ``action`` on a ticket that is ``status`` and held by ``holder`` (what a page
    offers; the action itself decides again under the row lock). An assignment is offered on a ticket nobody holds
    (the holder's second assignment changes nothing).

    >>> permitted(Action.RESOLVE, "routed", None, "bob"), permitted(Action.RESOLVE, "routed", "alice", "bob")
    (True, False)
    >>> permitted(Action.ASSIGN, "routed", "alice", "bob"), permitted(Action.UNASSIGN, "routed", None, "bob")
    (False, False)
    >>> permitted(Action.CORRECT, "resolved", None, "bob")  # the status table's word
    False
    """
    if action == Action.ASSIGN:
        return holder is None
    if action == Action.UNASSIGN:
        return holder == actor
    return holder in (None, actor) and status in TRANSITIONS[action]


def _assigned_to_other(ticket: Ticket, actor: str) -> None:
    """:class:`AssignmentConflictError` naming the holder when someone other than ``actor`` holds ``ticket``."""
    if ticket.assigned_to not in (None, actor):
        raise AssignmentConflictError(f"ticket {ticket.id} is claimed by {ticket.assigned_to}: only the holder can act "
                                 "on it until they release it", ticket.assigned_to)


def _acted_on(session: Session, ticket_id: int, actor: str) -> Ticket:
    """The ticket locked for ``actor``'s action: :class:`AssignmentConflictError` when someone else holds it."""
    ticket = _locked(session, ticket_id)
    _assigned_to_other(ticket, actor)
    return ticket


def corrected_fields(schema: TicketSchema, current: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """The ticket's fields after a person's ``changes`` (over its ``current`` ones): only the schema's fields,
    and valid; :class:`CorrectionRejectedError` naming every problem otherwise.

    >>> schema = TicketSchema.from_dict({"type": "object", "required": ["level"],
    ...                                  "properties": {"level": {"enum": ["low", "high"]}}})
    >>> corrected_fields(schema, {"level": "low"}, {"level": "high"})
    {'level': 'high'}
    >>> corrected_fields(schema, {}, {"colour": "red"})
    Traceback (most recent call last):
    ...
    triage.tickets.lifecycle.CorrectionRejectedError: fields not in the ticket schema: colour
    """
    unknown = sorted(set(changes) - set(schema.properties))
    if unknown:
        raise CorrectionRejectedError(f"fields not in the ticket schema: {', '.join(unknown)}", unknown=unknown)
    fields = schema.project({**current, **changes})
    issues = schema.validate(fields)
    if issues:
        missing = [name for name in schema.required if name not in fields]
        message = (f"the corrected ticket lacks required fields: {', '.join(missing)} (a ticket not extracted "
                   "yet has none: give them all)" if missing else "the corrected ticket does not match the schema")
        raise CorrectionRejectedError(message, missing=missing, issues=issues)
    return fields


def correct(sessions: sessionmaker[Session], ticket_id: int, actor: str, changes: Mapping[str, Any],
            schema: TicketSchema, router: Router, now: datetime, *, outbox: Outbox) -> dict[str, Any]:
    """Set the fields ``changes`` names (the others stay) and route the ticket by them; status ``corrected``.
    The fields that result are validated against ``schema`` under the row lock
    (:func:`corrected_fields`); they are returned.

    The SLA is the route's, counted from the ticket's SLA start (not from the correction): a correction
    that leaves the route and priority as they were leaves the due time alone.
    """
    with sessions.begin() as session:
        ticket = _acted_on(session, ticket_id, actor)
        fields = corrected_fields(schema, ticket.fields or {}, changes)
        before = snapshot(ticket)
        _apply(ticket, Action.CORRECT, now)
        decision = router.route(fields, ticket.sla_started_at)
        if (decision.route, decision.priority) != (ticket.route, ticket.priority) or ticket.sla_due_at is None:
            ticket.sla_due_at = decision.sla_due_at
        ticket.fields = fields
        ticket.route, ticket.priority = decision.route, decision.priority
        search.refresh(ticket)
        ticket.extractor = HUMAN_EXTRACTOR
        _drop_lease(ticket)
        ticket.finished_at = now
        _audit(session, outbox, ticket, actor, EventKind.CORRECTED, before, now)
        return fields


def assign(sessions: sessionmaker[Session], ticket_id: int, actor: str, now: datetime, *,
           outbox: Outbox) -> None:
    """Give the ticket to ``actor`` (assigning it twice is fine); someone else's assignment is a conflict."""
    with sessions.begin() as session:
        ticket = _acted_on(session, ticket_id, actor)
        if ticket.assigned_to == actor:
            return
        before = snapshot(ticket)
        _apply(ticket, Action.ASSIGN, now)
        ticket.assigned_to, ticket.assigned_at = actor, now
        _audit(session, outbox, ticket, actor, EventKind.ASSIGNED, before, now)


def unassign(sessions: sessionmaker[Session], ticket_id: int, actor: str, now: datetime, *,
             outbox: Outbox) -> None:
    """Release ``actor``'s assignment; only the holder may release it."""
    with sessions.begin() as session:
        ticket = _acted_on(session, ticket_id, actor)
        if ticket.assigned_to is None:
            raise AssignmentConflictError(f"ticket {ticket_id} is not claimed; only a holder can release it", None)
        before = snapshot(ticket)
        _apply(ticket, Action.UNASSIGN, now)
        ticket.assigned_to = ticket.assigned_at = None
        _audit(session, outbox, ticket, actor, EventKind.RELEASED, before, now)


def reprocess(sessions: sessionmaker[Session], ticket_id: int, actor: str, now: datetime, *,
              outbox: Outbox) -> None:
    """A person sends the ticket through extraction again (the caller publishes it after this returns).

    A worker still holding the previous run loses its lease, so its late result is discarded.
    """
    with sessions.begin() as session:
        ticket = _acted_on(session, ticket_id, actor)
        before = snapshot(ticket)
        _apply(ticket, Action.REPROCESS, now)
        _audit(session, outbox, ticket, actor, EventKind.REPROCESS, before, now)


class NotASuggestionError(ConflictError):
    """Confirm asks for a routed ticket in suggestion (autonomy ``suggest``); this one is not."""


def awaits_confirmation(status: str, autonomy: str | None) -> bool:
    """A routed ticket in suggestion: the helpdesk has only the note, until a person confirms or corrects it.

    >>> awaits_confirmation(Status.ROUTED, Level.SUGGEST), awaits_confirmation(Status.CORRECTED, Level.SUGGEST)
    (True, False)
    """
    return status == Status.ROUTED and autonomy == Level.SUGGEST


def confirm(sessions: sessionmaker[Session], ticket_id: int, actor: str, now: datetime, *,
            outbox: Outbox) -> None:
    """``actor`` confirms a routed ticket in suggestion as it is: it becomes theirs (``corrected``, fields, route
    and priority unchanged), the helpdesk gets the whole decision (event ``confirmed`` writes back in full) and
    the confirmation is a review that kept every field (:mod:`triage.learning.reviews`, accuracy).

    Someone else's assignment is :class:`AssignmentConflictError`; a ticket that is not a suggestion (another level, or
    no longer ``routed``) is :class:`NotASuggestionError`.
    """
    with sessions.begin() as session:
        ticket = _acted_on(session, ticket_id, actor)
        if not awaits_confirmation(ticket.status, ticket.autonomy):
            raise NotASuggestionError(f"ticket {ticket_id} is not a suggestion waiting for confirmation (status "
                                      f"{ticket.status}, autonomy {ticket.autonomy or 'none'}): only a routed "
                                      "ticket in suggestion can be confirmed; correct it instead")
        before = snapshot(ticket)
        _apply(ticket, Action.CONFIRM, now)
        _drop_lease(ticket)
        _audit(session, outbox, ticket, actor, EventKind.CONFIRMED, before, now)


def resolve(sessions: sessionmaker[Session], ticket_id: int, actor: str, now: datetime, *,
            outbox: Outbox) -> None:
    """Close the ticket (``resolved``); a new customer message reopens it as a new extraction."""
    with sessions.begin() as session:
        ticket = _acted_on(session, ticket_id, actor)
        before = snapshot(ticket)
        _apply(ticket, Action.RESOLVE, now)
        ticket.resolved_at = now
        _audit(session, outbox, ticket, actor, EventKind.RESOLVED, before, now)


def helpdesk_review(session: Session, ticket_id: int, actor: str, label: Mapping[str, Any], now: datetime) -> int:
    """Record a helpdesk agent's change of the ticket (``label``: what it says, triage.intake.labels) as a review:
    an audit event of kind ``helpdesk_review`` by ``actor`` (e.g. ``zendesk:8537190099001``), in ``session``'s
    transaction; its id.

    The agent decided in the helpdesk, so the desk's assignment rule does not apply (whoever holds the ticket
    here), the ticket's status, fields and route stay as they are (what the machine decided remains what is
    reviewed), and the outbox is not told: nothing is written back (no ping-pong) and no event is sent.
    """
    ticket = _locked(session, ticket_id)
    before = snapshot(ticket)
    audit = Event(ticket=ticket, actor=actor, kind=EventKind.HELPDESK_REVIEW, before=before,
                  after={**before, "label": dict(label)}, created_at=now)
    session.add(audit)
    session.flush()
    return audit.id


# ---- a job's actions -------------------------------------------------------------------------------

def reextract(sessions: sessionmaker[Session], ticket_id: int, kind: EventKind, now: datetime, *,
              only_from: Collection[Status] = (Status.ROUTED, Status.NEEDS_REVIEW),
              fallback_retry: bool = False, outbox: Outbox) -> bool:
    """A job's new extraction run, if the ticket is still in ``only_from`` (checked under lock);
    ``fallback_retry`` marks the one fresh pass retry-fallback gives."""
    with sessions.begin() as session:
        ticket = session.execute(select(Ticket).where(Ticket.id == ticket_id).with_for_update()).scalar_one_or_none()
        if ticket is None or ticket.status not in only_from or ticket.status not in sources(Action.REEXTRACT):
            return False
        before = snapshot(ticket)
        _apply(ticket, Action.REEXTRACT, now)
        ticket.fallback_retried = ticket.fallback_retried or fallback_retry
        _audit(session, outbox, ticket, kind.value, kind, before, now)
        return True
