"""The few queries the rest of triage needs, each one short transaction.

The ticket's ``status`` row is the source of truth. A worker *claims* a ticket with a
conditional UPDATE that hands it a lease token; every later write is conditional on that
token, so a redelivered or stale message can never overwrite a finished ticket::

    outcome = submit_conversation(sessions, "shop", "A-1", Conversation.from_text("hi"))
    claim = claim_for_extraction(sessions, outcome.ticket_id, lease_seconds=900)
    if claim is not None:  # None: finished, or another worker holds it
        ...
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from triage.conversation import Conversation
from triage.extraction.types import Attempt as AttemptRecord
from triage.extraction.types import ExtractionResult
from triage.routing import RouteDecision
from triage.store.models import (
    FALLBACK,
    NEEDS_REVIEW,
    PROCESSING,
    QUEUED,
    ROUTED,
    Attempt,
    Event,
    Ticket,
    utcnow,
)
from triage.store.models import Conversation as ConversationRow

WORKER_ACTOR = "worker"


@dataclass(frozen=True)
class SubmitOutcome:
    ticket_id: int
    status: str
    created: bool


@dataclass(frozen=True)
class Claim:
    """A worker's hold on a ticket: its conversation, run number and prior attempts."""

    ticket_id: int
    token: str
    run: int
    conversation: Conversation
    prior_attempts: list[AttemptRecord]


def content_hash(conversation: Conversation) -> str:
    canonical = json.dumps(conversation.to_dicts(), ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def submit_conversation(sessions: sessionmaker[Session], source: str, external_id: str,
                        conversation: Conversation, *, customer: dict[str, Any] | None = None,
                        raw_payload: dict[str, Any] | None = None) -> SubmitOutcome:
    """Store a conversation and its ``queued`` ticket; the same source + id returns the existing one.

    The caller enqueues the ticket only when ``created`` is true, after this has committed.
    """
    existing = _find_by_source(sessions, source, external_id)
    if existing is not None:
        return existing
    try:
        with sessions.begin() as session:
            row = ConversationRow(source=source, external_id=external_id, customer=customer,
                                  messages=conversation.to_dicts(), text=conversation.transcript(),
                                  raw_payload=raw_payload, content_hash=content_hash(conversation))
            ticket = Ticket(conversation=row, status=QUEUED)
            session.add_all([row, ticket])
            session.flush()
            return SubmitOutcome(ticket.id, ticket.status, created=True)
    except IntegrityError:  # a concurrent submit of the same conversation won the race
        found = _find_by_source(sessions, source, external_id)
        if found is None:
            raise
        return found


def _find_by_source(sessions: sessionmaker[Session], source: str, external_id: str) -> SubmitOutcome | None:
    with sessions() as session:
        found = session.execute(
            select(Ticket.id, Ticket.status).join(Ticket.conversation)
            .where(ConversationRow.source == source, ConversationRow.external_id == external_id)
        ).first()
    return None if found is None else SubmitOutcome(found.id, found.status, created=False)


def _to_record(row: Attempt) -> AttemptRecord:
    return AttemptRecord(n=row.n, model=row.model, outcome=row.outcome,  # type: ignore[arg-type]
                         raw_output=row.raw_output, finish_reason=row.finish_reason, error=row.error,
                         prompt_tokens=row.prompt_tokens, completion_tokens=row.completion_tokens,
                         reasoning_tokens=row.reasoning_tokens, latency_ms=row.latency_ms,
                         max_completion_tokens=row.max_completion_tokens, status_code=row.status_code)


def _claim(sessions: sessionmaker[Session], ticket_id: int, claimable: ColumnElement[bool],
           new_status: str, lease_seconds: float) -> Claim | None:
    now = utcnow()
    token = str(uuid.uuid4())
    with sessions.begin() as session:
        changed = session.execute(
            update(Ticket)
            .where(Ticket.id == ticket_id, claimable)
            .values(status=new_status, lease_token=token, lease_until=now + timedelta(seconds=lease_seconds),
                    updated_at=now)
        ).rowcount
        if not changed:
            return None
        ticket = session.get_one(Ticket, ticket_id)
        attempts = session.scalars(
            select(Attempt).where(Attempt.ticket_id == ticket_id, Attempt.run == ticket.run).order_by(Attempt.id)
        ).all()
        conversation = Conversation.from_dicts(ticket.conversation.messages)
        return Claim(ticket_id, token, ticket.run, conversation, [_to_record(a) for a in attempts])


def _lease_expired(now: datetime) -> ColumnElement[bool]:
    return or_(Ticket.lease_until.is_(None), Ticket.lease_until < now)


def claim_for_extraction(sessions: sessionmaker[Session], ticket_id: int, lease_seconds: float) -> Claim | None:
    """Move a ``queued`` ticket (or one whose worker's lease ran out) to ``processing``."""
    now = utcnow()
    claimable = or_(Ticket.status == QUEUED, and_(Ticket.status == PROCESSING, _lease_expired(now)))
    return _claim(sessions, ticket_id, claimable, PROCESSING, lease_seconds)


def claim_for_fallback(sessions: sessionmaker[Session], ticket_id: int, lease_seconds: float) -> Claim | None:
    """Hold a ``fallback`` ticket for the fallback task (it stays ``fallback`` until finished)."""
    claimable = and_(Ticket.status == FALLBACK, _lease_expired(utcnow()))
    return _claim(sessions, ticket_id, claimable, FALLBACK, lease_seconds)


def _add_attempts(session: Session, ticket_id: int, run: int, attempts: Sequence[AttemptRecord]) -> None:
    session.add_all(
        Attempt(ticket_id=ticket_id, run=run, n=a.n, model=a.model, outcome=a.outcome, raw_output=a.raw_output,
                finish_reason=a.finish_reason, error=a.error, status_code=a.status_code,
                prompt_tokens=a.prompt_tokens, completion_tokens=a.completion_tokens,
                reasoning_tokens=a.reasoning_tokens, latency_ms=a.latency_ms,
                max_completion_tokens=a.max_completion_tokens)
        for a in attempts
    )


def _held(session: Session, claim: Claim) -> Ticket | None:
    """The claimed ticket, locked, if this claim still holds it."""
    ticket = session.execute(
        select(Ticket).where(Ticket.id == claim.ticket_id, Ticket.lease_token == claim.token).with_for_update()
    ).scalar_one_or_none()
    return ticket


def _snapshot(ticket: Ticket) -> dict[str, Any]:
    return {"status": ticket.status, "fields": ticket.fields, "route": ticket.route,
            "priority": ticket.priority, "extractor": ticket.extractor,
            "fallback_reason": ticket.fallback_reason}


def _finish(session: Session, ticket: Ticket, status: str, result: ExtractionResult,
            decision: RouteDecision) -> None:
    before = _snapshot(ticket)
    fields = result.ticket or {}
    now = utcnow()
    ticket.status = status
    ticket.fields = fields
    ticket.problem_type = fields.get("problem_type")
    ticket.urgent_level = fields.get("urgent_level")
    ticket.route, ticket.priority, ticket.sla_due_at = decision.route, decision.priority, decision.sla_due_at
    ticket.extractor = result.extractor
    ticket.model = result.model or ticket.model
    ticket.schema_version, ticket.prompt_version = result.schema_version, result.prompt_version
    ticket.trimmed = ticket.trimmed or result.trimmed
    ticket.lease_token = ticket.lease_until = ticket.next_attempt_at = None
    ticket.finished_at = ticket.updated_at = now
    session.add(Event(ticket=ticket, actor=WORKER_ACTOR, kind=status, before=before, after=_snapshot(ticket)))


def finish(sessions: sessionmaker[Session], claim: Claim, result: ExtractionResult, decision: RouteDecision,
           status: str = ROUTED) -> bool:
    """Store an extraction, its attempts and its route with ``status`` (``routed``, or ``needs_review``
    for the fallback queue's rules ticket); ``False`` when the claim was lost meanwhile."""
    with sessions.begin() as session:
        ticket = _held(session, claim)
        if ticket is None:
            return False
        _add_attempts(session, claim.ticket_id, claim.run, result.attempts)
        _finish(session, ticket, status, result, decision)
        return True


def send_to_fallback(sessions: sessionmaker[Session], claim: Claim, attempts: Sequence[AttemptRecord],
                     reason: str, detail: str | None, *, trimmed: bool = False) -> bool:
    """Record the failed attempts and mark the ticket ``fallback`` (then publish the fallback task)."""
    raw = next((a.raw_output for a in reversed([*claim.prior_attempts, *attempts]) if a.raw_output), None)
    with sessions.begin() as session:
        ticket = _held(session, claim)
        if ticket is None:
            return False
        _add_attempts(session, claim.ticket_id, claim.run, attempts)
        before = _snapshot(ticket)
        ticket.status = FALLBACK
        ticket.fallback_reason, ticket.fallback_detail, ticket.fallback_raw_output = reason, detail, raw
        ticket.trimmed = ticket.trimmed or trimmed
        ticket.lease_token = ticket.lease_until = ticket.next_attempt_at = None
        ticket.updated_at = utcnow()
        session.add(Event(ticket=ticket, actor=WORKER_ACTOR, kind=FALLBACK, before=before,
                          after=_snapshot(ticket)))
        return True


def release_for_retry(sessions: sessionmaker[Session], claim: Claim, attempts: Sequence[AttemptRecord],
                      countdown: float) -> bool:
    """Record the attempts and put the ticket back to ``queued`` until its retry is due."""
    now = utcnow()
    with sessions.begin() as session:
        ticket = _held(session, claim)
        if ticket is None:
            return False
        _add_attempts(session, claim.ticket_id, claim.run, attempts)
        ticket.status = QUEUED
        ticket.lease_token = ticket.lease_until = None
        ticket.next_attempt_at = now + timedelta(seconds=countdown)
        ticket.updated_at = now
        return True


@dataclass(frozen=True)
class StuckTicket:
    ticket_id: int
    status: str


@dataclass(frozen=True)
class Sweep:
    requeued: list[StuckTicket]
    poisoned: list[int]


POISON = "poison"


def requeue_stuck(sessions: sessionmaker[Session], older_than: timedelta, max_requeues: int,
                  poison_route: RouteDecision) -> Sweep:
    """Tickets waiting in ``queued``/``processing``/``fallback`` longer than ``older_than``.

    Each one's ``updated_at`` is bumped and ``requeue_count`` incremented in the same
    transaction, so it is handed out once per threshold; the caller re-publishes them. A ticket
    already re-enqueued ``max_requeues`` times keeps coming back: it goes to ``needs_review``
    on ``poison_route`` with reason ``poison`` instead.
    """
    now = utcnow()
    cutoff = now - older_than
    due = or_(Ticket.next_attempt_at.is_(None), Ticket.next_attempt_at < cutoff)
    waiting = and_(Ticket.status.in_((QUEUED, FALLBACK)), Ticket.lease_token.is_(None), due)
    abandoned = and_(Ticket.status.in_((PROCESSING, FALLBACK)), Ticket.lease_until < now)
    with sessions.begin() as session:
        rows = session.scalars(
            select(Ticket).where(Ticket.updated_at < cutoff, or_(waiting, abandoned)).with_for_update(skip_locked=True)
        ).all()
        requeued, poisoned = [], []
        for ticket in rows:
            if ticket.requeue_count >= max_requeues:
                _poison(session, ticket, poison_route, now)
                poisoned.append(ticket.id)
            else:
                requeued.append(StuckTicket(ticket.id, ticket.status))
                ticket.updated_at, ticket.requeue_count = now, ticket.requeue_count + 1
    return Sweep(requeued, poisoned)


def _poison(session: Session, ticket: Ticket, decision: RouteDecision, now: datetime) -> None:
    before = _snapshot(ticket)
    ticket.status, ticket.fallback_reason = NEEDS_REVIEW, POISON
    ticket.fallback_detail = f"re-enqueued {ticket.requeue_count} times without finishing"
    ticket.route, ticket.priority, ticket.sla_due_at = decision.route, decision.priority, decision.sla_due_at
    ticket.lease_token = ticket.lease_until = ticket.next_attempt_at = None
    ticket.finished_at = ticket.updated_at = now
    session.add(Event(ticket=ticket, actor=WORKER_ACTOR, kind=NEEDS_REVIEW, before=before, after=_snapshot(ticket)))
