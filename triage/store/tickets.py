"""Read queries over tickets, shared by ``triage tickets`` and the dispatch review API.

Pages use keyset cursors (opaque strings), so a page never repeats or skips a ticket while
new ones arrive::

    page = list_tickets(sessions, TicketFilter(status="routed"), order="newest", limit=50)
    more = list_tickets(sessions, TicketFilter(status="routed"), order="newest", limit=50,
                        cursor=page.next_cursor)
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from triage.store.models import CORRECTED, NEEDS_REVIEW, ROUTED, Attempt, Conversation, Event, Ticket, utcnow

Order = Literal["newest", "oldest", "sla"]
#: Tickets a team still has to handle (their SLA clock runs).
OPEN_STATUSES = (ROUTED, NEEDS_REVIEW, CORRECTED)


class CursorError(ValueError):
    """The cursor is not one this query handed out."""


@dataclass(frozen=True)
class TicketFilter:
    status: str | None = None
    route: str | None = None
    problem_type: str | None = None
    urgent_level: str | None = None
    since: datetime | None = None
    ids: Sequence[int] | None = None


@dataclass(frozen=True)
class TicketView:
    """A ticket as listed by ``triage tickets`` and ``GET /tickets``."""

    id: int
    source: str
    external_id: str
    status: str
    problem_type: str | None
    device_model: str | None
    urgent_level: str | None
    user_requirements: list[str] | None
    route: str | None
    priority: str | None
    sla_due_at: datetime | None
    extractor: str | None
    attempts: int
    fallback_reason: str | None
    assigned_to: str | None
    created_at: datetime

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("sla_due_at", "created_at"):
            data[key] = data[key].isoformat() if data[key] else None
        return data


@dataclass(frozen=True)
class TicketPage:
    items: list[TicketView]
    next_cursor: str | None


def _encode(values: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def _decode(cursor: str) -> dict[str, Any]:
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except ValueError as exc:
        raise CursorError("cursor is not valid; use the next_cursor of a previous page") from exc
    if not isinstance(values, dict) or not isinstance(values.get("id"), int):
        raise CursorError("cursor is not valid; use the next_cursor of a previous page")
    return values


def _filtered(query: Select[Any], filters: TicketFilter) -> Select[Any]:
    for column, value in ((Ticket.status, filters.status), (Ticket.route, filters.route),
                          (Ticket.problem_type, filters.problem_type), (Ticket.urgent_level, filters.urgent_level)):
        if value is not None:
            query = query.where(column == value)
    if filters.since is not None:
        query = query.where(Ticket.created_at >= filters.since)
    if filters.ids is not None:
        query = query.where(Ticket.id.in_(filters.ids))
    return query


def _ordered(query: Select[Any], order: Order, cursor: dict[str, Any] | None) -> Select[Any]:
    """Order, and continue after ``cursor``. ``sla``: soonest due first (so breached first), no SLA last."""
    if order == "newest":
        if cursor:
            query = query.where(Ticket.id < cursor["id"])
        return query.order_by(Ticket.id.desc())
    if order == "oldest":
        if cursor:
            query = query.where(Ticket.id > cursor["id"])
        return query.order_by(Ticket.id)
    if cursor:
        due = datetime.fromisoformat(cursor["due"]) if cursor.get("due") else None
        if due is None:
            query = query.where(Ticket.sla_due_at.is_(None), Ticket.id > cursor["id"])
        else:
            after = or_(Ticket.sla_due_at > due, and_(Ticket.sla_due_at == due, Ticket.id > cursor["id"]))
            query = query.where(or_(after, Ticket.sla_due_at.is_(None)))
    return query.order_by(Ticket.sla_due_at.is_(None), Ticket.sla_due_at, Ticket.id)


def _view(ticket: Ticket, source: str, external_id: str, attempts: int) -> TicketView:
    fields = ticket.fields or {}
    return TicketView(
        id=ticket.id, source=source, external_id=external_id, status=ticket.status,
        problem_type=ticket.problem_type, device_model=fields.get("device_model"),
        urgent_level=ticket.urgent_level, user_requirements=fields.get("user_requirements"),
        route=ticket.route, priority=ticket.priority, sla_due_at=ticket.sla_due_at, extractor=ticket.extractor,
        attempts=attempts, fallback_reason=ticket.fallback_reason, assigned_to=ticket.assigned_to,
        created_at=ticket.created_at)


def list_tickets(sessions: sessionmaker[Session], filters: TicketFilter | None = None, *, order: Order = "oldest",
                 limit: int | None = None, cursor: str | None = None) -> TicketPage:
    """Tickets matching ``filters``; ``attempts`` counts the LLM calls made for each."""
    attempts = (select(func.count(Attempt.id)).where(Attempt.ticket_id == Ticket.id)
                .correlate(Ticket).scalar_subquery())
    query = select(Ticket, Conversation.source, Conversation.external_id, attempts).join(Ticket.conversation)
    query = _ordered(_filtered(query, filters or TicketFilter()), order, _decode(cursor) if cursor else None)
    if limit is not None:
        query = query.limit(limit + 1)
    with sessions() as session:
        rows = session.execute(query).all()
    views = [_view(*row) for row in rows]
    if limit is None or len(views) <= limit:
        return TicketPage(views, None)
    last = views[limit - 1]
    position: dict[str, Any] = {"id": last.id}
    if order == "sla":
        position["due"] = last.sla_due_at.isoformat() if last.sla_due_at else None
    return TicketPage(views[:limit], _encode(position))


def ticket_detail(sessions: sessionmaker[Session], ticket_id: int) -> dict[str, Any] | None:
    """The ticket, its conversation, every attempt and every audit event, as JSON-ready data."""
    page = list_tickets(sessions, TicketFilter(ids=[ticket_id]))
    if not page.items:
        return None
    with sessions() as session:  # one session at a time: SQLite's BEGIN IMMEDIATE would wait on itself
        ticket = session.get_one(Ticket, ticket_id)
        conversation = ticket.conversation
        return {
            "ticket": {**page.items[0].to_json(), "fields": ticket.fields, "model": ticket.model,
                       "schema_version": ticket.schema_version, "prompt_version": ticket.prompt_version,
                       "fallback_detail": ticket.fallback_detail, "fallback_raw_output": ticket.fallback_raw_output,
                       "run": ticket.run, "finished_at": _iso(ticket.finished_at)},
            "conversation": {"id": conversation.id, "source": conversation.source,
                             "external_id": conversation.external_id, "customer": conversation.customer,
                             "messages": conversation.messages, "received_at": _iso(conversation.received_at)},
            "attempts": [_attempt_json(a) for a in ticket.attempts],
            "events": [_event_json(e) for e in ticket.events],
        }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _attempt_json(attempt: Attempt) -> dict[str, Any]:
    return {"run": attempt.run, "n": attempt.n, "model": attempt.model, "outcome": attempt.outcome,
            "raw_output": attempt.raw_output, "finish_reason": attempt.finish_reason, "error": attempt.error,
            "status_code": attempt.status_code, "prompt_tokens": attempt.prompt_tokens,
            "completion_tokens": attempt.completion_tokens, "reasoning_tokens": attempt.reasoning_tokens,
            "latency_ms": attempt.latency_ms, "max_completion_tokens": attempt.max_completion_tokens,
            "created_at": _iso(attempt.created_at)}


def _event_json(event: Event) -> dict[str, Any]:
    return {"actor": event.actor, "kind": event.kind, "before": event.before, "after": event.after,
            "created_at": _iso(event.created_at)}


def queue_stats(sessions: sessionmaker[Session]) -> dict[str, Any]:
    """Counts per route and status, and the oldest SLA due time per route (open tickets only)."""
    with sessions() as session:
        counts = session.execute(
            select(Ticket.route, Ticket.status, func.count(Ticket.id)).group_by(Ticket.route, Ticket.status)
        ).all()
        due = session.execute(
            select(Ticket.route, func.min(Ticket.sla_due_at))
            .where(Ticket.sla_due_at.is_not(None), Ticket.status.in_(OPEN_STATUSES))
            .group_by(Ticket.route)
        ).all()
    now = utcnow()
    routes: dict[str, dict[str, Any]] = {}
    for route, status, count in counts:
        entry = routes.setdefault(route or "(unrouted)", {"counts": {}, "oldest_sla_due_at": None, "breached": False})
        entry["counts"][status] = count
    for route, oldest in due:
        entry = routes.setdefault(route, {"counts": {}, "oldest_sla_due_at": None, "breached": False})
        entry["oldest_sla_due_at"] = _iso(oldest)
        entry["breached"] = oldest is not None and oldest < now
    return {"routes": routes}
