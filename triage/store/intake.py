"""Taking in a platform's message durably and exactly once.

A message arrives with its *intake keys* (the platform's delivery or event id, and the
source + conversation + message id). A key seen before means a redelivery: the existing ticket
is returned and nothing is enqueued. A new message on a known conversation is appended to it,
and the ticket is triaged again unless a person already corrected it. Two identical deliveries
at once still make one ticket: the unique keys decide, and the loser reads the winner's row::

    received = receive(sessions, "zendesk", "35436", Conversation.from_text("..."), ["event:01HN"])
    if received.enqueue:
        enqueue_extraction(received.ticket_id)   # after the commit, never before
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from triage.conversation import Conversation
from triage.store.models import CORRECTED, QUEUED, IntakeKey, Ticket
from triage.store.models import Conversation as ConversationRow
from triage.store.review import requeue_for_extraction
from triage.store.service import content_hash

INTAKE_ACTOR = "intake"
RACE_RETRIES = 3


@dataclass(frozen=True)
class Received:
    ticket_id: int
    status: str
    duplicate: bool
    enqueue: bool


def _existing_key(session: Session, source: str, keys: Sequence[str]) -> Ticket | None:
    found = session.execute(
        select(Ticket).join(IntakeKey, IntakeKey.conversation_id == Ticket.conversation_id)
        .where(IntakeKey.source == source, IntakeKey.key.in_(keys))
    ).scalars().first()
    return found


def _append(session: Session, row: ConversationRow, conversation: Conversation) -> Received:
    merged = Conversation.from_dicts([*row.messages, *conversation.to_dicts()])
    row.messages, row.text, row.content_hash = merged.to_dicts(), merged.transcript(), content_hash(merged)
    ticket = session.execute(select(Ticket).where(Ticket.conversation_id == row.id).with_for_update()).scalar_one()
    waiting = ticket.status == QUEUED and ticket.lease_token is None  # its extraction will read the new text
    if ticket.status == CORRECTED or waiting:
        return Received(ticket.id, ticket.status, duplicate=False, enqueue=False)
    requeue_for_extraction(session, ticket, INTAKE_ACTOR, "new_message")
    return Received(ticket.id, ticket.status, duplicate=False, enqueue=True)


def _receive_once(session: Session, source: str, external_id: str, conversation: Conversation,
                  keys: Sequence[str], customer: dict[str, Any] | None, raw: dict[str, Any] | None) -> Received:
    seen = _existing_key(session, source, keys)
    if seen is not None:
        return Received(seen.id, seen.status, duplicate=True, enqueue=False)
    row = session.execute(
        select(ConversationRow).where(ConversationRow.source == source, ConversationRow.external_id == external_id)
        .with_for_update()
    ).scalar_one_or_none()
    if row is None:
        row = ConversationRow(source=source, external_id=external_id, customer=customer,
                              messages=conversation.to_dicts(), text=conversation.transcript(), raw_payload=raw,
                              content_hash=content_hash(conversation))
        ticket = Ticket(conversation=row, status=QUEUED)
        session.add_all([row, ticket])
        session.flush()
        received = Received(ticket.id, ticket.status, duplicate=False, enqueue=True)
    else:
        received = _append(session, row, conversation)
    session.add_all(IntakeKey(source=source, key=key, conversation_id=row.id) for key in keys)
    session.flush()
    return received


def receive(sessions: sessionmaker[Session], source: str, external_id: str, conversation: Conversation,
            keys: Sequence[str], *, customer: dict[str, Any] | None = None,
            raw: dict[str, Any] | None = None) -> Received:
    """Store ``conversation`` (new messages) under ``source`` + ``external_id``, exactly once per key."""
    for _ in range(RACE_RETRIES):
        try:
            with sessions.begin() as session:
                return _receive_once(session, source, external_id, conversation, keys, customer, raw)
        except IntegrityError:  # a concurrent delivery inserted the same row first: read its result
            continue
    raise RuntimeError(f"{source}/{external_id}: could not store the message after {RACE_RETRIES} tries")
