"""The de-duplication lookup: the latest ticket whose LLM extraction a conversation with the same key may reuse.

Reusable: extracted by the LLM and routed by it (``routed``, or since ``resolved``; not held for
review, not corrected by a person), finished within the window. A source listed as off takes no
part either way: its tickets neither reuse nor are reused. One indexed statement
(``ix_tickets_dedupe_key``); keys are :func:`triage.extraction.dedupe.conversation_key`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, select
from sqlalchemy.orm import Session, sessionmaker

from triage.states.tickets import Status
from triage.store.models import CONVERSATIONS, TICKETS

REUSED_EXTRACTOR = "llm"
REUSED_STATUSES = (Status.ROUTED, Status.RESOLVED)


@dataclass(frozen=True)
class Earlier:
    """The ticket whose extraction is reused: its id, its fields and the model that read it."""

    ticket_id: int
    fields: dict[str, Any]
    model: str | None


def find_earlier(sessions: sessionmaker[Session], ticket_id: int, key: str, now: datetime, window_seconds: float,
                 sources_off: Sequence[str] = ()) -> Earlier | None:
    """The latest reusable ticket other than ``ticket_id`` with ``key``, finished after ``now - window_seconds``."""
    with sessions() as session:
        row = session.execute(_earlier(ticket_id, key, now - timedelta(seconds=window_seconds), sources_off)).first()
    return Earlier(row.id, dict(row.fields or {}), row.model) if row is not None else None


def _earlier(ticket_id: int, key: str, since: datetime, sources_off: Sequence[str]) -> Select[Any]:
    query = (select(TICKETS.c.id, TICKETS.c.fields, TICKETS.c.model)
             .where(TICKETS.c.dedupe_key == key, TICKETS.c.id != ticket_id, TICKETS.c.extractor == REUSED_EXTRACTOR,
                    TICKETS.c.status.in_(REUSED_STATUSES), TICKETS.c.fallback_reason.is_(None),
                    TICKETS.c.finished_at >= since)
             .order_by(TICKETS.c.finished_at.desc()).limit(1))
    if not sources_off:
        return query
    return (query.join(CONVERSATIONS, CONVERSATIONS.c.id == TICKETS.c.conversation_id)
            .where(CONVERSATIONS.c.source.not_in(sources_off), _own_source_on(ticket_id, sources_off)))


def _own_source_on(ticket_id: int, sources_off: Sequence[str]) -> ColumnElement[bool]:
    """Ticket ``ticket_id``'s own source is not off (a scalar subquery, so the lookup stays one statement)."""
    own, conversation = TICKETS.alias("own"), CONVERSATIONS.alias("own_conversation")
    source = (select(conversation.c.source).join(own, own.c.conversation_id == conversation.c.id)
              .where(own.c.id == ticket_id).scalar_subquery())
    return source.not_in(sources_off)
