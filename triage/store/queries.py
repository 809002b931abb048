"""Read queries over tickets, shared by ``triage tickets`` and the dispatch review API.

Pages use keyset cursors (opaque strings), so a page never repeats or skips a ticket while
new ones arrive::

    page = list_tickets(sessions, TicketFilter(status="routed"), order="newest", limit=50)
    more = list_tickets(sessions, TicketFilter(status="routed"), order="newest", limit=50,
                        cursor=page.next_cursor)

A ticket's extracted fields are listed as they are stored (the whole validated ticket), whatever
the schema defines; ``TicketFilter.fields`` filters on any of them.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import ColumnElement, Select, and_, func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from triage.errors import InputError, NotFoundError
from triage.states.tickets import OPEN, Action, Status, sources
from triage.store import search
from triage.store.deliveries import deliveries_of
from triage.store.models import MAX_ID, Attempt, Conversation, Event, Ticket
from triage.text import repair_text

Order = Literal["newest", "oldest", "sla"]


class TicketNotFoundError(NotFoundError):
    """No ticket has this id."""

    def __init__(self, ticket_id: int) -> None:
        super().__init__(f"no ticket {ticket_id}")
        self.ticket_id = ticket_id


#: Ticket ids are 32-bit integer keys: a larger id names no ticket (and must not reach PostgreSQL).
MAX_TICKET_ID = 2**31 - 1


def known_ticket_id(ticket_id: int) -> int:
    """``ticket_id`` when a ticket could have it, else :class:`TicketNotFoundError` (never a database error).

    >>> known_ticket_id(2**31)
    Traceback (most recent call last):
    ...
    triage.store.queries.TicketNotFoundError: no ticket 2147483648
    """
    if not 0 < ticket_id <= MAX_TICKET_ID:
        raise TicketNotFoundError(ticket_id)
    return ticket_id


class CursorError(InputError):
    """The cursor is not one this query handed out."""


@dataclass(frozen=True)
class TicketFilter:
    status: str | None = None
    route: str | None = None
    priority: str | None = None
    #: Extracted field -> the value it must have (string comparison of the stored JSON value).
    fields: Mapping[str, str] = field(default_factory=dict)
    since: datetime | None = None
    ids: Sequence[int] | None = None
    #: The person holding the ticket (its ``assigned_to``).
    assigned_to: str | None = None
    #: Case-insensitive substring of the conversation or the field values (:mod:`triage.store.search`).
    search: str | None = None
    #: The autonomy level applied (``suggest`` with status ``routed``: the desk's "Needs confirmation").
    autonomy: str | None = None


@dataclass(frozen=True)
class TicketView:
    """A ticket as listed by ``triage tickets`` and ``GET /tickets``."""

    id: int
    source: str
    external_id: str
    status: str
    #: The extracted ticket: every schema field (empty before the first extraction).
    fields: dict[str, Any]
    route: str | None
    priority: str | None
    sla_due_at: datetime | None
    extractor: str | None
    attempts: int
    fallback_reason: str | None
    assigned_to: str | None
    created_at: datetime
    #: The machine's confidence in its routing (triage.confidence): the ticket's (its lowest routing field's) and
    #: each routing field's; None on a ticket no machine routed.
    confidence: float | None = None
    field_confidence: dict[str, float] | None = None
    #: The autonomy level applied to its machine decision: auto, suggest, review or shadow.
    autonomy: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The listing's JSON: the ticket's own keys with the extracted fields among them, top level."""
        data = asdict(self)
        fields = data.pop("fields")
        for key in ("sla_due_at", "created_at"):
            data[key] = data[key].isoformat() if data[key] else None
        head = {key: data.pop(key) for key in ("id", "source", "external_id", "status")}
        return {**head, **fields, **data}


#: The keys a listed ticket has besides its fields; a schema field may not take one of these names.
VIEW_KEYS = frozenset(f.name for f in dataclasses.fields(TicketView)) - {"fields"}


@dataclass(frozen=True)
class TicketPage:
    items: list[TicketView]
    next_cursor: str | None


def _encode(values: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def _decode(cursor: str) -> dict[str, Any]:
    """The position a cursor holds; anything this module did not hand out is :class:`CursorError` (400)."""
    invalid = CursorError("cursor is not valid; use the next_cursor of a previous page")
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except ValueError as exc:
        raise invalid from exc
    if not isinstance(values, dict):
        raise invalid
    position = values.get("id")
    if type(position) is not int or not 0 <= position <= MAX_ID:
        raise invalid
    if values.get("due") is not None:
        try:
            due = datetime.fromisoformat(values["due"])
        except (TypeError, ValueError) as exc:
            raise invalid from exc
        if due.tzinfo is None:
            raise invalid
    return values


def _filtered(query: Select[Any], filters: TicketFilter) -> Select[Any]:
    for column, value in ((Ticket.status, filters.status), (Ticket.route, filters.route),
                          (Ticket.priority, filters.priority), (Ticket.assigned_to, filters.assigned_to),
                          (Ticket.autonomy, filters.autonomy)):
        if value is not None:  # repaired: a NUL in a query string must not reach PostgreSQL
            query = query.where(column == repair_text(value).text)
    for name, wanted in filters.fields.items():
        query = query.where(Ticket.fields[name].as_string() == repair_text(wanted).text)
    if filters.since is not None:
        query = query.where(Ticket.created_at >= filters.since)
    if filters.ids is not None:
        query = query.where(Ticket.id.in_(filters.ids))
    if filters.search and filters.search.strip():
        query = query.where(search.matches(filters.search))
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
    return TicketView(
        id=ticket.id, source=source, external_id=external_id, status=ticket.status,
        fields=dict(ticket.fields or {}), route=ticket.route, priority=ticket.priority,
        sla_due_at=ticket.sla_due_at, extractor=ticket.extractor,
        attempts=attempts, fallback_reason=ticket.fallback_reason, assigned_to=ticket.assigned_to,
        created_at=ticket.created_at, confidence=ticket.confidence, field_confidence=ticket.field_confidence,
        autonomy=ticket.autonomy)


def ticket_view(session: Session, ticket: Ticket) -> TicketView:
    """``ticket`` as listed (``GET /tickets``), read in ``session`` (pending changes flushed first)."""
    attempts = session.scalar(select(func.count(Attempt.id)).where(Attempt.ticket_id == ticket.id)) or 0
    return _view(ticket, ticket.conversation.source, ticket.conversation.external_id, attempts)


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
    """The ticket, its conversation, every attempt, every audit event and every outbound delivery (the
    outbox's, oldest first), as JSON-ready data."""
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
                       "run": ticket.run, "finished_at": _iso(ticket.finished_at),
                       "resolved_at": _iso(ticket.resolved_at), "trimmed": ticket.trimmed,
                       "sla_started_at": _iso(ticket.sla_started_at), "dedupe_of": ticket.dedupe_of,
                       "flags": dict(ticket.flags or {})},
            "conversation": {"id": conversation.id, "source": conversation.source,
                             "external_id": conversation.external_id, "customer": conversation.customer,
                             "messages": conversation.messages, "received_at": _iso(conversation.received_at)},
            "attempts": [_attempt_json(a) for a in ticket.attempts],
            "events": [_event_json(e) for e in ticket.events],
            "deliveries": deliveries_of(session, ticket_id),
        }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _attempt_json(attempt: Attempt) -> dict[str, Any]:
    return {"run": attempt.run, "n": attempt.n, "model": attempt.model, "outcome": attempt.outcome,
            "raw_output": attempt.raw_output, "finish_reason": attempt.finish_reason, "error": attempt.error,
            "status_code": attempt.status_code, "prompt_tokens": attempt.prompt_tokens,
            "completion_tokens": attempt.completion_tokens, "reasoning_tokens": attempt.reasoning_tokens,
            "latency_ms": attempt.latency_ms, "max_completion_tokens": attempt.max_completion_tokens,
            "parse_path": attempt.parse_path, "repairs": list(attempt.repairs or []),
            "batch_id": attempt.batch_id, "batch_size": attempt.batch_size,
            "batch_raw_output": attempt.batch.raw_output if attempt.batch else None,
            "confidence": attempt.confidence, "field_confidence": attempt.field_confidence,
            "created_at": _iso(attempt.created_at)}


def _event_json(event: Event) -> dict[str, Any]:
    return {"actor": event.actor, "kind": event.kind, "before": event.before, "after": event.after,
            "created_at": _iso(event.created_at)}


def sla_breached(now: datetime) -> ColumnElement[bool]:
    """The one definition of an SLA breach, for the desk, ``/queues``, alerts and metrics: the clock is
    past the ticket's ``sla_due_at`` and the ticket is not ``resolved``."""
    return and_(Ticket.sla_due_at.is_not(None), Ticket.sla_due_at < now, Ticket.status != Status.RESOLVED)


def breached_among(sessions: sessionmaker[Session], ids: Sequence[int], now: datetime) -> set[int]:
    """Which of the tickets ``ids`` are breached (:func:`sla_breached`)."""
    if not ids:
        return set()
    with sessions() as session:
        return set(session.scalars(select(Ticket.id).where(Ticket.id.in_(ids), sla_breached(now))))


def queue_stats(sessions: sessionmaker[Session], now: datetime) -> dict[str, Any]:
    """Counts per route and status, the oldest SLA due time of the open tickets per route, and how many
    tickets of each route are breached (:func:`sla_breached`)."""
    with sessions() as session:
        counts = session.execute(
            select(Ticket.route, Ticket.status, func.count(Ticket.id)).group_by(Ticket.route, Ticket.status)
        ).all()
        due = session.execute(
            select(Ticket.route, func.min(Ticket.sla_due_at))
            .where(Ticket.sla_due_at.is_not(None), Ticket.status.in_(OPEN))
            .group_by(Ticket.route)
        ).all()
        breaches = session.execute(
            select(Ticket.route, func.count(Ticket.id)).where(sla_breached(now)).group_by(Ticket.route)
        ).all()
    routes: dict[str, dict[str, Any]] = {}

    def entry(route: str | None) -> dict[str, Any]:
        return routes.setdefault(route or "(unrouted)", {"counts": {}, "oldest_sla_due_at": None, "breached": False,
                                                         "breached_count": 0})

    for route, status, count in counts:
        entry(route)["counts"][status] = count
    for route, oldest in due:
        entry(route)["oldest_sla_due_at"] = _iso(oldest)
    for route, count in breaches:
        entry(route).update(breached=count > 0, breached_count=count)
    return {"routes": routes}


def select_for_reprocess(sessions: sessionmaker[Session], *, schema_version: str | None = None,
                         prompt_version: str | None = None, status: str | None = None,
                         since: datetime | None = None) -> list[int]:
    """Ids of finished tickets a job may re-extract matching every given filter (never a corrected one)."""
    query = select(Ticket.id).where(Ticket.status.in_(sources(Action.REEXTRACT))).order_by(Ticket.id)
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


def transient_failures(sessions: sessionmaker[Session], reasons: Sequence[str], finished_before: datetime) -> list[int]:
    """``needs_review`` tickets that failed for one of ``reasons`` before ``finished_before`` and have not had
    their fresh pass."""
    with sessions() as session:
        return list(session.scalars(
            select(Ticket.id).where(Ticket.status == Status.NEEDS_REVIEW, Ticket.fallback_reason.in_(reasons),
                                    Ticket.fallback_retried.is_(False), Ticket.finished_at <= finished_before)
            .order_by(Ticket.id)))
