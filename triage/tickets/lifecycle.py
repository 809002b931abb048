"""Every change of a ticket's status, its lease and its audit trail: the only writer of ``tickets.status``.

Each public function is one short transaction and takes ``now`` from the application's clock.
Automatic steps hold a *lease*: :func:`claim` hands a worker a token with a deadline, and every
later write of that run is conditional on the token, so a redelivered message, a duplicate, or a
worker whose lease ran out cannot overwrite a finished ticket. A person's actions lock the row
and check :data:`~triage.tickets.states.TRANSITIONS`; a transition the table does not hold raises
:class:`~triage.tickets.states.TransitionError`. Every change that matters to people writes an
audit :class:`~triage.store.models.Event` whose before and after come from :func:`snapshot`, and in the
same transaction the outbox's deliveries that decision needs (write-back, events, alerts:
:func:`triage.outbox.outbox.decided`, published only after the commit)::

    claim = lifecycle.claim(sessions, ticket_id, now, lease_seconds=60)
    if claim is not None:  # None: finished, or another worker holds it
        ...
        lifecycle.finish(sessions, claim, result, decision, now)
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, case, exists, func, or_, select, update
from sqlalchemy.orm import Session, aliased, sessionmaker

from triage.conversation import Conversation
from triage.errors import ConflictError
from triage.extraction.injection import InjectionMatch
from triage.extraction.types import Attempt as AttemptRecord
from triage.extraction.types import ExtractionResult
from triage.outbox import outbox
from triage.routing import RouteDecision, Router
from triage.store import search
from triage.store.db import changed_rows
from triage.store.models import Attempt, Event, Ticket
from triage.store.models import Conversation as ConversationRow
from triage.store.queries import TicketNotFoundError
from triage.tickets.states import (
    Action,
    EventKind,
    FallbackReason,
    Flag,
    Status,
    Transition,
    single_target,
    sources,
    transition,
)

WORKER_ACTOR = "worker"
INTAKE_ACTOR = "intake"
#: The extractor recorded when a person set the fields.
HUMAN_EXTRACTOR = "human"


class ClaimConflictError(ConflictError):
    """Someone else holds the ticket (or nobody does, for a release)."""


@dataclass(frozen=True)
class Claim:
    """A worker's hold on a ticket for one extraction run: its conversation and the run's earlier attempts."""

    ticket_id: int
    token: str
    run: int
    conversation: Conversation
    prior_attempts: list[AttemptRecord]
    #: The start of the ticket's SLA: routing counts the due time from here, not from when the run ends.
    sla_started_at: datetime


def snapshot(ticket: Ticket) -> dict[str, Any]:
    """What every audit event records, before and after the change."""
    return {"status": ticket.status, "fields": ticket.fields, "route": ticket.route, "priority": ticket.priority,
            "sla_due_at": ticket.sla_due_at.isoformat() if ticket.sla_due_at else None,
            "extractor": ticket.extractor, "model": ticket.model, "schema_version": ticket.schema_version,
            "prompt_version": ticket.prompt_version, "assigned_to": ticket.assigned_to,
            "fallback_reason": ticket.fallback_reason}


# ---- the lease ----------------------------------------------------------------------------------

def _grant_lease(now: datetime, seconds: float) -> dict[str, Any]:
    """The column values of a new lease (for a conditional UPDATE)."""
    return {"lease_token": str(uuid.uuid4()), "lease_until": now + timedelta(seconds=seconds)}


def _drop_lease(ticket: Ticket) -> None:
    """End the current run's hold and any scheduled retry."""
    ticket.lease_token = ticket.lease_until = ticket.next_attempt_at = None


def _lease_free(now: datetime) -> ColumnElement[bool]:
    """Nobody holds a live lease on the ticket."""
    return or_(Ticket.lease_until.is_(None), Ticket.lease_until < now)


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
    return step


def _audit(session: Session, ticket: Ticket, actor: str, kind: EventKind, before: dict[str, Any],
           now: datetime) -> None:
    """The audit event of a decision, and in the same transaction the outbox's deliveries it needs."""
    audit = Event(ticket=ticket, actor=actor, kind=kind, before=before, after=snapshot(ticket), created_at=now)
    session.add(audit)
    outbox.decided(session, ticket, audit, before, now)


def _locked(session: Session, ticket_id: int) -> Ticket:
    ticket = session.execute(select(Ticket).where(Ticket.id == ticket_id).with_for_update()).scalar_one_or_none()
    if ticket is None:
        raise TicketNotFoundError(ticket_id)
    return ticket


def _held(session: Session, claim: Claim) -> Ticket | None:
    """The claimed ticket, locked, if this claim still holds it."""
    return session.execute(
        select(Ticket).where(Ticket.id == claim.ticket_id, Ticket.lease_token == claim.token).with_for_update()
    ).scalar_one_or_none()


def _add_attempts(session: Session, ticket_id: int, run: int, attempts: Sequence[AttemptRecord],
                  now: datetime) -> None:
    session.add_all(
        Attempt(ticket_id=ticket_id, run=run, n=a.n, model=a.model, outcome=a.outcome, raw_output=a.raw_output,
                finish_reason=a.finish_reason, error=a.error, status_code=a.status_code,
                prompt_tokens=a.prompt_tokens, completion_tokens=a.completion_tokens,
                reasoning_tokens=a.reasoning_tokens, latency_ms=a.latency_ms,
                max_completion_tokens=a.max_completion_tokens, parse_path=a.parse_path, repairs=list(a.repairs),
                batch_id=a.batch_id, batch_size=a.batch_size, created_at=now)
        for a in attempts
    )


def _to_record(row: Attempt) -> AttemptRecord:
    return AttemptRecord(n=row.n, model=row.model, outcome=row.outcome,  # type: ignore[arg-type]
                         raw_output=row.raw_output, finish_reason=row.finish_reason, error=row.error,
                         prompt_tokens=row.prompt_tokens, completion_tokens=row.completion_tokens,
                         reasoning_tokens=row.reasoning_tokens, latency_ms=row.latency_ms,
                         max_completion_tokens=row.max_completion_tokens, status_code=row.status_code,
                         parse_path=row.parse_path, repairs=tuple(row.repairs or ()),
                         batch_id=row.batch_id, batch_size=row.batch_size)


def _store_result(ticket: Ticket, result: ExtractionResult, decision: RouteDecision, now: datetime) -> None:
    ticket.fields = result.ticket or {}
    ticket.route, ticket.priority, ticket.sla_due_at = decision.route, decision.priority, decision.sla_due_at
    ticket.extractor = result.extractor
    ticket.model = result.model or ticket.model
    ticket.schema_version, ticket.prompt_version = result.schema_version, result.prompt_version
    ticket.trimmed = ticket.trimmed or result.trimmed
    ticket.dedupe_key, ticket.dedupe_of = result.dedupe_key, result.dedupe_of
    flag_injection(ticket, result.injection)
    search.refresh(ticket)
    _drop_lease(ticket)
    ticket.finished_at = now


def flag(ticket: Ticket, name: Flag, detail: dict[str, Any] | None = None) -> None:
    """Record ``name`` on the ticket with its ``detail`` (a flag stays once set)."""
    ticket.flags = {**(ticket.flags or {}), name.value: detail or {}}


def flag_injection(ticket: Ticket, match: InjectionMatch | None) -> None:
    """Record ``injection_suspected`` with the matched pattern and text, when there is a match."""
    if match is not None:
        flag(ticket, Flag.INJECTION_SUSPECTED, match.to_dict())


# ---- birth and new messages (in the intake's transaction) ----------------------------------------

def wait_began(sent_at: datetime | None, now: datetime) -> datetime:
    """When the customer started waiting: the platform's time for the message, never later than ``now``
    (a sender's clock may run ahead), else ``now``."""
    return min(sent_at, now) if sent_at is not None else now


def open_ticket(session: Session, conversation: ConversationRow, now: datetime,
                sent_at: datetime | None = None) -> Ticket:
    """A new ``queued`` ticket for a new conversation (the caller publishes it after the commit); its SLA
    counts from ``sent_at``, the platform's time for the first customer message, when given."""
    ticket = Ticket(conversation=conversation, status=Status.QUEUED, run=1, created_at=now, updated_at=now, flags={},
                    sla_started_at=wait_began(sent_at, now))
    search.refresh(ticket)
    session.add(ticket)
    return ticket


def append_message(session: Session, ticket: Ticket, now: datetime, sent_at: datetime | None = None) -> bool:
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
    _audit(session, ticket, INTAKE_ACTOR, EventKind.REOPENED if reopening else EventKind.NEW_MESSAGE, before, now)
    return True


# ---- a worker's run -------------------------------------------------------------------------------

def _claim(sessions: sessionmaker[Session], ticket_id: int, action: Action, now: datetime,
           lease_seconds: float) -> Claim | None:
    with sessions.begin() as session:
        changed = session.execute(
            update(Ticket)
            .where(Ticket.id == ticket_id, Ticket.status.in_(sources(action)), _lease_free(now))
            .values(status=single_target(action), updated_at=now, **_grant_lease(now, lease_seconds))
            .returning(Ticket.lease_token, Ticket.run)
        ).first()
        if changed is None:
            return None
        ticket = session.get_one(Ticket, ticket_id)
        attempts = session.scalars(
            select(Attempt).where(Attempt.ticket_id == ticket_id, Attempt.run == changed.run).order_by(Attempt.id)
        ).all()
        conversation = Conversation.from_dicts(ticket.conversation.messages)
        return Claim(ticket_id, str(changed.lease_token), changed.run, conversation, [_to_record(a) for a in attempts],
                     ticket.sla_started_at)


def claim(sessions: sessionmaker[Session], ticket_id: int, now: datetime, lease_seconds: float) -> Claim | None:
    """Move a ``queued`` ticket (or a ``processing`` one whose lease ran out) to ``processing`` under a
    new lease; ``None`` when it is finished or held (a redelivered message then changes nothing)."""
    return _claim(sessions, ticket_id, Action.CLAIM, now, lease_seconds)


def claim_fallback(sessions: sessionmaker[Session], ticket_id: int, now: datetime,
                   lease_seconds: float) -> Claim | None:
    """Hold a ``fallback`` ticket for the fallback task (it stays ``fallback`` until finished)."""
    return _claim(sessions, ticket_id, Action.CLAIM_FALLBACK, now, lease_seconds)


def _batchable(now: datetime) -> ColumnElement[bool]:
    """A ticket another ticket's run may take into its batch: claimable now, and no retry scheduled later."""
    return and_(Ticket.status.in_(sources(Action.CLAIM)), _lease_free(now),
                or_(Ticket.next_attempt_at.is_(None), Ticket.next_attempt_at <= now))


def backlog_exceeds(sessions: sessionmaker[Session], ticket_id: int, now: datetime, count: int) -> bool:
    """More than ``count`` tickets besides ``ticket_id`` could be claimed now (reads at most ``count + 1`` ids)."""
    with sessions.begin() as session:
        waiting = select(Ticket.id).where(Ticket.id != ticket_id, _batchable(now)).limit(count + 1).subquery()
        return (session.scalar(select(func.count()).select_from(waiting)) or 0) > count


def claim_batch(sessions: sessionmaker[Session], ticket_id: int, size: int, now: datetime,
                lease_seconds: float) -> list[Claim]:
    """:func:`claim` ``ticket_id`` and, in the same statement, up to ``size - 1`` other claimable tickets
    (oldest first; on PostgreSQL rows another worker is claiming are skipped), all under one new lease.

    ``ticket_id``'s claim comes first; nothing is claimed (``[]``) when ``ticket_id`` itself is not
    claimable. The other tickets' own messages then find them held (or finished) and do nothing.
    """
    chosen = (select(Ticket.id)
              .where(or_(Ticket.id == ticket_id, _batchable(now)), Ticket.status.in_(sources(Action.CLAIM)),
                     _lease_free(now), _claimable_exists(ticket_id, now))
              .order_by(case((Ticket.id == ticket_id, 0), else_=1), Ticket.id)
              .limit(size).with_for_update(skip_locked=True)
              .cte("chosen"))  # a CTE runs once: PostgreSQL may run an IN subquery again, past its LIMIT
    with sessions.begin() as session:
        rows = session.execute(
            update(Ticket)
            .where(Ticket.id.in_(select(chosen.c.id)), Ticket.status.in_(sources(Action.CLAIM)),
                   _lease_free(now))
            .values(status=single_target(Action.CLAIM), updated_at=now, **_grant_lease(now, lease_seconds))
            .returning(Ticket.id, Ticket.lease_token, Ticket.run, Ticket.sla_started_at, Ticket.conversation_id)
        ).all()
        if not rows:
            return []
        messages: dict[int, list[Any]] = {
            conversation.id: conversation.messages for conversation in session.execute(
                select(ConversationRow.id, ConversationRow.messages)
                .where(ConversationRow.id.in_([row.conversation_id for row in rows])))}
        runs = {row.id: row.run for row in rows}
        prior: dict[int, list[AttemptRecord]] = {row.id: [] for row in rows}
        for attempt in session.scalars(select(Attempt).where(Attempt.ticket_id.in_(runs)).order_by(Attempt.id)):
            if attempt.run == runs[attempt.ticket_id]:
                prior[attempt.ticket_id].append(_to_record(attempt))
    claims = [Claim(row.id, str(row.lease_token), row.run, Conversation.from_dicts(messages[row.conversation_id]),
                    prior[row.id], row.sla_started_at) for row in rows]
    return sorted(claims, key=lambda claim: (claim.ticket_id != ticket_id, claim.ticket_id))


def _claimable_exists(ticket_id: int, now: datetime) -> ColumnElement[bool]:
    """``ticket_id`` itself is claimable: a batch is only ever taken by its own ticket's message."""
    own = aliased(Ticket)
    return exists().where(own.id == ticket_id, own.status.in_(sources(Action.CLAIM)),
                          or_(own.lease_until.is_(None), own.lease_until < now))


def renew_batch(sessions: sessionmaker[Session], claims: Sequence[Claim], now: datetime,
                lease_seconds: float) -> int:
    """:func:`renew` every claim of a batch in one statement; how many are still held."""
    with sessions.begin() as session:
        return changed_rows(session.execute(
            update(Ticket)
            .where(Ticket.id.in_([claim.ticket_id for claim in claims]),
                   Ticket.lease_token.in_({claim.token for claim in claims}),
                   Ticket.status.in_(sources(Action.RENEW)))
            .values(lease_until=now + timedelta(seconds=lease_seconds))
        ))


def renew(sessions: sessionmaker[Session], claim: Claim, now: datetime, lease_seconds: float) -> bool:
    """Extend the lease while the worker still works on the ticket; ``False`` when the claim was lost."""
    with sessions.begin() as session:
        changed = changed_rows(session.execute(
            update(Ticket)
            .where(Ticket.id == claim.ticket_id, Ticket.lease_token == claim.token,
                   Ticket.status.in_(sources(Action.RENEW)))
            .values(lease_until=now + timedelta(seconds=lease_seconds))
        ))
    return bool(changed)


def finish(sessions: sessionmaker[Session], claim: Claim, result: ExtractionResult, decision: RouteDecision,
           now: datetime) -> bool:
    """Store a valid extraction, its attempts and its route (``routed``); ``False`` when the claim was lost."""
    return _finish(sessions, claim, result, decision, now, Action.FINISH, EventKind.ROUTED)


def finish_fallback(sessions: sessionmaker[Session], claim: Claim, result: ExtractionResult,
                    decision: RouteDecision, now: datetime) -> bool:
    """Store the fallback queue's rules ticket for a person (``needs_review`` on the fallback route)."""
    return _finish(sessions, claim, result, decision, now, Action.FINISH_FALLBACK, EventKind.NEEDS_REVIEW)


def _finish(sessions: sessionmaker[Session], claim: Claim, result: ExtractionResult, decision: RouteDecision,
            now: datetime, action: Action, kind: EventKind) -> bool:
    with sessions.begin() as session:
        ticket = _held(session, claim)
        if ticket is None:
            return False
        _add_attempts(session, claim.ticket_id, claim.run, result.attempts, now)
        before = snapshot(ticket)
        _apply(ticket, action, now)
        _store_result(ticket, result, decision, now)
        _audit(session, ticket, WORKER_ACTOR, kind, before, now)
        return True


def hold_for_review(sessions: sessionmaker[Session], claim: Claim, result: ExtractionResult, decision: RouteDecision,
                    reason: FallbackReason, detail: str, now: datetime) -> bool:
    """Store the model's valid ticket, fields and all, but for a person: ``needs_review`` on ``decision``
    (the fallback route) with ``reason``, instead of the route the fields give; ``False`` when the claim was lost."""
    with sessions.begin() as session:
        ticket = _held(session, claim)
        if ticket is None:
            return False
        _add_attempts(session, claim.ticket_id, claim.run, result.attempts, now)
        before = snapshot(ticket)
        _apply(ticket, Action.HOLD_FOR_REVIEW, now)
        _store_result(ticket, result, decision, now)
        ticket.fallback_reason, ticket.fallback_detail = reason, detail
        _audit(session, ticket, WORKER_ACTOR, EventKind.NEEDS_REVIEW, before, now)
        return True


def send_to_fallback(sessions: sessionmaker[Session], claim: Claim, attempts: Sequence[AttemptRecord],
                     reason: FallbackReason, detail: str | None, now: datetime, *, trimmed: bool = False,
                     injection: InjectionMatch | None = None) -> bool:
    """Record the failed attempts and mark the ticket ``fallback`` (the caller then publishes the fallback task)."""
    raw = next((a.raw_output for a in reversed([*claim.prior_attempts, *attempts]) if a.raw_output), None)
    with sessions.begin() as session:
        ticket = _held(session, claim)
        if ticket is None:
            return False
        _add_attempts(session, claim.ticket_id, claim.run, attempts, now)
        before = snapshot(ticket)
        _apply(ticket, Action.SEND_TO_FALLBACK, now)
        ticket.fallback_reason, ticket.fallback_detail, ticket.fallback_raw_output = reason, detail, raw
        ticket.trimmed = ticket.trimmed or trimmed
        flag_injection(ticket, injection)
        _drop_lease(ticket)
        _audit(session, ticket, WORKER_ACTOR, EventKind.FALLBACK, before, now)
        return True


def abandon_fallback(sessions: sessionmaker[Session], claim: Claim, reason: FallbackReason, detail: str,
                     decision: RouteDecision, now: datetime) -> bool:
    """The fallback task itself failed: the ticket goes to a person as it is (``needs_review`` on
    ``decision``'s route, its fields unchanged) with ``reason`` and ``detail``."""
    with sessions.begin() as session:
        ticket = _held(session, claim)
        if ticket is None:
            return False
        before = snapshot(ticket)
        _apply(ticket, Action.FINISH_FALLBACK, now)
        ticket.fallback_reason, ticket.fallback_detail = reason, detail
        ticket.route, ticket.priority, ticket.sla_due_at = decision.route, decision.priority, decision.sla_due_at
        _drop_lease(ticket)
        ticket.finished_at = now
        _audit(session, ticket, WORKER_ACTOR, EventKind.NEEDS_REVIEW, before, now)
        return True


def release_for_retry(sessions: sessionmaker[Session], claim: Claim, attempts: Sequence[AttemptRecord],
                      countdown: float, now: datetime) -> bool:
    """Record the attempts and put the ticket back to ``queued`` until its retry is due."""
    with sessions.begin() as session:
        ticket = _held(session, claim)
        if ticket is None:
            return False
        _add_attempts(session, claim.ticket_id, claim.run, attempts, now)
        _apply(ticket, Action.RELEASE_FOR_RETRY, now)
        _drop_lease(ticket)
        ticket.next_attempt_at = now + timedelta(seconds=countdown)
        return True


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
          poison_route: Callable[[datetime], RouteDecision]) -> Sweep:
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
                _poison(session, ticket, poison_route, now)
                poisoned.append(ticket.id)
                continue
            if ticket.lease_token is not None:  # its worker's lease ran out
                _apply(ticket, Action.REQUEUE, now)
                _drop_lease(ticket)
            requeued.append(StuckTicket(ticket.id, Status(ticket.status)))
            ticket.updated_at, ticket.requeue_count = now, ticket.requeue_count + 1
    return Sweep(requeued, poisoned)


def _poison(session: Session, ticket: Ticket, route: Callable[[datetime], RouteDecision], now: datetime) -> None:
    decision = route(ticket.sla_started_at)
    before = snapshot(ticket)
    _apply(ticket, Action.POISON, now)
    ticket.fallback_reason = FallbackReason.POISON
    ticket.fallback_detail = f"re-enqueued {ticket.requeue_count} times without finishing"
    ticket.route, ticket.priority, ticket.sla_due_at = decision.route, decision.priority, decision.sla_due_at
    _drop_lease(ticket)
    ticket.finished_at = now
    _audit(session, ticket, WORKER_ACTOR, EventKind.NEEDS_REVIEW, before, now)


# ---- a person's actions ---------------------------------------------------------------------------

def correct(sessions: sessionmaker[Session], ticket_id: int, actor: str, fields: dict[str, Any], router: Router,
            now: datetime) -> None:
    """Store a person's (already validated) fields and their route; status ``corrected``.

    The SLA is the route's, counted from the ticket's SLA start (not from the correction): a correction
    that leaves the route and priority as they were leaves the due time alone.
    """
    with sessions.begin() as session:
        ticket = _locked(session, ticket_id)
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
        _audit(session, ticket, actor, EventKind.CORRECTED, before, now)


def assign(sessions: sessionmaker[Session], ticket_id: int, actor: str, now: datetime) -> None:
    """Give the ticket to ``actor`` (claiming it twice is fine); someone else's claim is a conflict."""
    with sessions.begin() as session:
        ticket = _locked(session, ticket_id)
        if ticket.assigned_to == actor:
            return
        if ticket.assigned_to is not None:
            raise ClaimConflictError(f"ticket {ticket_id} is claimed by {ticket.assigned_to}")
        before = snapshot(ticket)
        _apply(ticket, Action.ASSIGN, now)
        ticket.assigned_to, ticket.assigned_at = actor, now
        _audit(session, ticket, actor, EventKind.CLAIMED, before, now)


def unassign(sessions: sessionmaker[Session], ticket_id: int, actor: str, now: datetime) -> None:
    """Release ``actor``'s claim; only the holder may release it."""
    with sessions.begin() as session:
        ticket = _locked(session, ticket_id)
        if ticket.assigned_to != actor:
            holder = f"claimed by {ticket.assigned_to}" if ticket.assigned_to else "not claimed"
            raise ClaimConflictError(f"ticket {ticket_id} is {holder}; only the holder can release it")
        before = snapshot(ticket)
        _apply(ticket, Action.UNASSIGN, now)
        ticket.assigned_to = ticket.assigned_at = None
        _audit(session, ticket, actor, EventKind.RELEASED, before, now)


def reprocess(sessions: sessionmaker[Session], ticket_id: int, actor: str, now: datetime) -> None:
    """A person sends the ticket through extraction again (the caller publishes it after this returns).

    A worker still holding the previous run loses its lease, so its late result is discarded.
    """
    with sessions.begin() as session:
        ticket = _locked(session, ticket_id)
        before = snapshot(ticket)
        _apply(ticket, Action.REPROCESS, now)
        _audit(session, ticket, actor, EventKind.REPROCESS, before, now)


def reextract(sessions: sessionmaker[Session], ticket_id: int, kind: EventKind, now: datetime, *,
              only_from: Collection[Status] = (Status.ROUTED, Status.NEEDS_REVIEW),
              fallback_retry: bool = False) -> bool:
    """A job's new extraction run, if the ticket is still in ``only_from`` (checked under lock);
    ``fallback_retry`` marks the one fresh pass retry-fallback gives."""
    with sessions.begin() as session:
        ticket = session.execute(select(Ticket).where(Ticket.id == ticket_id).with_for_update()).scalar_one_or_none()
        if ticket is None or ticket.status not in only_from or ticket.status not in sources(Action.REEXTRACT):
            return False
        before = snapshot(ticket)
        _apply(ticket, Action.REEXTRACT, now)
        ticket.fallback_retried = ticket.fallback_retried or fallback_retry
        _audit(session, ticket, kind.value, kind, before, now)
        return True


def resolve(sessions: sessionmaker[Session], ticket_id: int, actor: str, now: datetime) -> None:
    """Close the ticket (``resolved``); a new customer message reopens it as a new extraction."""
    with sessions.begin() as session:
        ticket = _locked(session, ticket_id)
        before = snapshot(ticket)
        _apply(ticket, Action.RESOLVE, now)
        ticket.resolved_at = now
        _audit(session, ticket, actor, EventKind.RESOLVED, before, now)
