"""What a dispatcher does to a ticket: correct it, claim it, send it through extraction again.

Every change writes an audit :class:`~triage.store.models.Event` with the actor, before and
after, in the same transaction::

    outcome = assign(sessions, ticket_id, actor="alice")   # Assigned | AssignConflict | None
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from triage.routing import RouteDecision
from triage.store.models import CORRECTED, NEEDS_REVIEW, QUEUED, ROUTED, Event, Ticket, utcnow

HUMAN_EXTRACTOR = "human"
#: Tickets an automatic job may send through extraction again (never ``corrected`` ones).
REPROCESSABLE = (ROUTED, NEEDS_REVIEW)


def _snapshot(ticket: Ticket) -> dict[str, Any]:
    return {"status": ticket.status, "fields": ticket.fields, "route": ticket.route, "priority": ticket.priority,
            "sla_due_at": ticket.sla_due_at.isoformat() if ticket.sla_due_at else None,
            "extractor": ticket.extractor, "assigned_to": ticket.assigned_to}


def _locked(session: Session, ticket_id: int) -> Ticket | None:
    return session.execute(select(Ticket).where(Ticket.id == ticket_id).with_for_update()).scalar_one_or_none()


def current_fields(sessions: sessionmaker[Session], ticket_id: int) -> dict[str, Any] | None:
    """The ticket's fields (``{}`` before extraction), or ``None`` when there is no such ticket."""
    with sessions() as session:
        ticket = session.get(Ticket, ticket_id)
        return None if ticket is None else dict(ticket.fields or {})


def correct(sessions: sessionmaker[Session], ticket_id: int, actor: str, fields: dict[str, Any],
            decision: RouteDecision) -> bool:
    """Store a person's (already validated) fields and their route; status ``corrected``."""
    with sessions.begin() as session:
        ticket = _locked(session, ticket_id)
        if ticket is None:
            return False
        before = _snapshot(ticket)
        ticket.fields = fields
        ticket.problem_type, ticket.urgent_level = fields.get("problem_type"), fields.get("urgent_level")
        ticket.route, ticket.priority, ticket.sla_due_at = decision.route, decision.priority, decision.sla_due_at
        ticket.status, ticket.extractor = CORRECTED, HUMAN_EXTRACTOR
        ticket.lease_token = ticket.lease_until = ticket.next_attempt_at = None
        ticket.updated_at = ticket.finished_at = utcnow()
        session.add(Event(ticket=ticket, actor=actor, kind="corrected", before=before, after=_snapshot(ticket)))
        return True


@dataclass(frozen=True)
class AssignResult:
    found: bool
    assigned_to: str | None
    conflict: bool


def assign(sessions: sessionmaker[Session], ticket_id: int, actor: str) -> AssignResult:
    """Give the ticket to ``actor``; a ticket someone else holds is a conflict (claiming twice is fine)."""
    with sessions.begin() as session:
        ticket = _locked(session, ticket_id)
        if ticket is None:
            return AssignResult(found=False, assigned_to=None, conflict=False)
        if ticket.assigned_to not in (None, actor):
            return AssignResult(found=True, assigned_to=ticket.assigned_to, conflict=True)
        if ticket.assigned_to is None:
            before = _snapshot(ticket)
            ticket.assigned_to, ticket.assigned_at = actor, utcnow()
            session.add(Event(ticket=ticket, actor=actor, kind="claimed", before=before, after=_snapshot(ticket)))
        return AssignResult(found=True, assigned_to=actor, conflict=False)


def requeue_for_extraction(session: Session, ticket: Ticket, actor: str, kind: str) -> None:
    """Start a new extraction run for ``ticket`` (in the caller's transaction); publish after commit.

    A worker still holding the previous run loses its lease, so its late result is discarded.
    """
    before = _snapshot(ticket)
    ticket.status, ticket.run = QUEUED, ticket.run + 1
    ticket.lease_token = ticket.lease_until = ticket.next_attempt_at = None
    ticket.fallback_reason = ticket.fallback_detail = ticket.fallback_raw_output = None
    ticket.updated_at = utcnow()
    session.add(Event(ticket=ticket, actor=actor, kind=kind, before=before, after=_snapshot(ticket)))


def reprocess(sessions: sessionmaker[Session], ticket_id: int, actor: str) -> bool:
    """Send the ticket through extraction again (the caller enqueues it after this returns)."""
    with sessions.begin() as session:
        ticket = _locked(session, ticket_id)
        if ticket is None:
            return False
        requeue_for_extraction(session, ticket, actor, "reprocess")
        return True


def select_for_reprocess(sessions: sessionmaker[Session], *, schema_version: str | None = None,
                         prompt_version: str | None = None, status: str | None = None,
                         since: datetime | None = None) -> list[int]:
    """Ids of finished tickets matching every given filter, never one a person corrected."""
    query = select(Ticket.id).where(Ticket.status.in_(REPROCESSABLE)).order_by(Ticket.id)
    if schema_version is not None:
        query = query.where(Ticket.schema_version == schema_version)
    if prompt_version is not None:
        query = query.where(Ticket.prompt_version == prompt_version)
    if status is not None:
        query = query.where(Ticket.status == status)
    if since is not None:
        query = query.where(Ticket.created_at >= since)
    with sessions() as session:
        return list(session.scalars(query))


def transient_failures(sessions: sessionmaker[Session], reasons: Sequence[str], older_than: timedelta) -> list[int]:
    """``needs_review`` tickets that failed for one of ``reasons`` and have not had their fresh pass."""
    cutoff = utcnow() - older_than
    with sessions() as session:
        return list(session.scalars(
            select(Ticket.id).where(Ticket.status == NEEDS_REVIEW, Ticket.fallback_reason.in_(reasons),
                                    Ticket.fallback_retried.is_(False), Ticket.finished_at <= cutoff)
            .order_by(Ticket.id)))


def requeue(sessions: sessionmaker[Session], ticket_id: int, actor: str, kind: str, *,
            allowed: Sequence[str] = REPROCESSABLE, fallback_retry: bool = False) -> bool:
    """Start a new extraction run if the ticket's status is still in ``allowed`` (checked under lock)."""
    with sessions.begin() as session:
        ticket = _locked(session, ticket_id)
        if ticket is None or ticket.status not in allowed:
            return False
        requeue_for_extraction(session, ticket, actor, kind)
        ticket.fallback_retried = ticket.fallback_retried or fallback_retry
        return True
