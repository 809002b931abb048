"""The desk's reviews as training labels: every review is a label.

A review is an audit event a person made on a ticket's fields:

- a correction (``corrected``): the corrected values are the labels;
- a resolve without a correction (``resolved``): it confirms the fields the ticket had, the machine's
  (after a correction, the person's, which the correction already gave);
- a helpdesk agent's group or priority change (``helpdesk_review``, triage.intake.labels): a route-level
  label, which gives only the field values its route or priority implies (``after.label.fields``, e.g.
  ``problem_type`` for a route only one problem type leads to), none of the others;
- a confirmation of a suggestion (``confirmed``, the desk's "Confirm"): the fields the ticket had are right.

A ticket reviewed several times counts once, with its latest review; a helpdesk label adds its implied
values to what an earlier review of the ticket gave rather than replacing it. What the model reads is the
ticket's conversation as stored now; a purged conversation takes its reviews with it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from triage.conversation import Conversation
from triage.learning.features import model_text
from triage.learning.fit import TrainingRow
from triage.states.tickets import REVIEW_KINDS, EventKind
from triage.store.models import Conversation as ConversationRow
from triage.store.models import Event, Ticket

#: The ``source`` of a training row that came from a review.
REVIEWS_SOURCE = "reviews"


@dataclass(frozen=True)
class ReviewLabels:
    """The labelled rows the reviews give, and the last review event read."""

    rows: list[TrainingRow]
    through: int


def reviewed_fields(kind: str, before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> dict[str, Any]:
    """The field values a review says are right.

    >>> reviewed_fields("corrected", {"fields": {"p": "a"}}, {"fields": {"p": "b"}})
    {'p': 'b'}
    >>> reviewed_fields("resolved", {"fields": {"p": "a"}, "extractor": "rules"}, {"fields": {"p": "a"}})
    {'p': 'a'}
    >>> reviewed_fields("helpdesk_review", {"fields": {"p": "a", "u": "x"}},
    ...                 {"fields": {"p": "a", "u": "x"}, "label": {"route": "r", "fields": {"p": "b"}}})
    {'p': 'b'}
    >>> reviewed_fields("confirmed", {"fields": {"p": "a"}, "extractor": "llm"}, {"fields": {"p": "a"}})
    {'p': 'a'}
    """
    if kind == EventKind.HELPDESK_REVIEW:
        label = (after or {}).get("label")
        implied = label.get("fields") if isinstance(label, dict) else None
        return dict(implied) if isinstance(implied, dict) else {}
    snapshot = after if kind == EventKind.CORRECTED else before
    fields = (snapshot or {}).get("fields")
    return dict(fields) if isinstance(fields, dict) else {}


def review_labels(sessions: sessionmaker[Session], fields: Sequence[str], *, after: int = 0,
                  since: datetime | None = None) -> ReviewLabels:
    """Labels of ``fields`` from the reviews after event ``after`` (and made at or after ``since``)."""
    query = (select(Event.id, Event.ticket_id, Event.kind, Event.before, Event.after, ConversationRow.messages)
             .join(Ticket, Ticket.id == Event.ticket_id)
             .join(ConversationRow, ConversationRow.id == Ticket.conversation_id)
             .where(Event.kind.in_(REVIEW_KINDS), Event.id > after).order_by(Event.id))
    if since is not None:
        query = query.where(Event.created_at >= since)
    latest: dict[int, TrainingRow] = {}
    through = after
    with sessions() as session:
        for event_id, ticket_id, kind, before, changed, messages in session.execute(query):
            through = max(through, event_id)
            values = reviewed_fields(kind, before, changed)
            labels = {name: str(values[name]) for name in fields if isinstance(values.get(name), str)}
            text = model_text(Conversation.from_dicts(messages))
            if labels and text.strip():
                earlier = latest.pop(ticket_id, None)  # the latest review of a ticket comes last
                if kind == EventKind.HELPDESK_REVIEW and earlier is not None:
                    labels = {**earlier.labels, **labels}
                latest[ticket_id] = TrainingRow(text, labels, REVIEWS_SOURCE, f"ticket:{ticket_id}")
    return ReviewLabels(list(latest.values()), through)


def count_reviews(sessions: sessionmaker[Session], after: int) -> int:
    """How many reviews were made after event ``after``."""
    with sessions() as session:
        return int(session.scalar(select(func.count()).select_from(Event)
                                  .where(Event.kind.in_(REVIEW_KINDS), Event.id > after)) or 0)


def last_review(sessions: sessionmaker[Session]) -> int:
    """The newest review's event id (0 before any review)."""
    with sessions() as session:
        return int(session.scalar(select(func.max(Event.id)).where(Event.kind.in_(REVIEW_KINDS))) or 0)


def merged(rows: Sequence[TrainingRow], reviews: Sequence[TrainingRow]) -> list[TrainingRow]:
    """``rows`` and ``reviews`` together; a reviewed text's review replaces a row with the same text.

    >>> [r.labels for r in merged([TrainingRow("a", {"p": "x"})], [TrainingRow(" a", {"p": "y"})])]
    [{'p': 'y'}]
    """
    reviewed = {row.text.strip() for row in reviews}
    return [row for row in rows if row.text.strip() not in reviewed] + list(reviews)
