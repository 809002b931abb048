"""Taking in a conversation durably and exactly once: a ``triage submit`` line or a platform's message.

A platform message arrives with its *intake keys* (the platform's delivery or event id, and the
source + conversation + message id). A key seen before means a redelivery: the existing ticket
is returned and nothing is enqueued. A new message on a known conversation is appended to it and
handed to :func:`triage.tickets.lifecycle.append_message`, which decides whether a new
extraction starts. Messages the conversation already ends with are not appended again (a
producer that reposts the same body under a new delivery id, or resends the history with one new
message): see :func:`new_messages`. Two identical deliveries at once still make one ticket: the
unique keys decide, and the loser reads the winner's row::

    received = receive(sessions, "zendesk", "35436", Conversation.from_text("..."), ["event:01HN"], now)
    if received.enqueue:
        publish(received.ticket_id)   # after the commit, never before
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from triage.conversation import Conversation, Message
from triage.errors import ConflictError
from triage.store.models import Conversation as ConversationRow
from triage.store.models import IntakeKey, Ticket
from triage.tickets import lifecycle
from triage.tickets.states import Flag

RACE_RETRIES = 3


@dataclass(frozen=True)
class PlatformIds:
    """Where the conversation lives on its platform: the id its REST API takes and, where the platform has
    several, the account (stored on the conversation so a write-back knows where to write)."""

    ticket_id: str | None = None
    account_id: str | None = None


NO_PLATFORM_IDS = PlatformIds()


@dataclass(frozen=True)
class Received:
    """Where a conversation ended: its ticket, the ticket's status, and whether to publish it now."""

    ticket_id: int
    status: str
    duplicate: bool
    enqueue: bool


def content_hash(conversation: Conversation) -> str:
    canonical = json.dumps(conversation.to_dicts(), ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def new_messages(stored: Sequence[Message], incoming: Sequence[Message]) -> list[Message]:
    """The messages of ``incoming`` to append to a conversation that holds ``stored``.

    What the conversation already ends with is dropped (the longest start of ``incoming`` equal to
    the end of ``stored``: a repost, or a history resent with new messages after it), and then any
    message identical to the conversation's last one from the same role:

    >>> hi, ok, more = Message("customer", "hi"), Message("agent", "ok"), Message("customer", "more")
    >>> new_messages([hi, ok], [hi, ok]), new_messages([hi, ok], [hi, ok, more])
    ([], [Message(role='customer', text='more')])
    >>> new_messages([hi, ok], [hi])  # the customer's last message again, under a new delivery id
    []
    """
    overlap = next((k for k in range(min(len(stored), len(incoming)), 0, -1)
                    if list(stored[-k:]) == list(incoming[:k])), 0)
    last_by_role = {message.role: message.text for message in stored}
    fresh = []
    for message in incoming[overlap:]:
        if last_by_role.get(message.role) != message.text:
            fresh.append(message)
            last_by_role[message.role] = message.text
    return fresh


def _flag_repaired(ticket: Ticket, repaired: Sequence[str]) -> None:
    if repaired:
        earlier = (ticket.flags or {}).get(Flag.TEXT_REPAIRED.value, {}).get("fields", [])
        lifecycle.flag(ticket, Flag.TEXT_REPAIRED, {"fields": sorted({*earlier, *repaired})})


@dataclass(frozen=True)
class Arrival:
    """What intake knows of a delivery besides its text: when it came, which fields had to be repaired (the
    ticket's ``text_repaired`` flag), when the platform says the customer wrote (the SLA's start), and the
    platform's own ids (where write-back goes)."""

    now: datetime
    repaired: Sequence[str] = ()
    sent_at: datetime | None = None
    platform: PlatformIds = NO_PLATFORM_IDS


def _new_conversation(session: Session, source: str, external_id: str, conversation: Conversation,
                      customer: dict[str, Any] | None, raw: dict[str, Any] | None,
                      arrival: Arrival) -> tuple[ConversationRow, Received]:
    row = ConversationRow(source=source, external_id=external_id, customer=customer,
                          messages=conversation.to_dicts(), text=conversation.transcript(), raw_payload=raw,
                          content_hash=content_hash(conversation), received_at=arrival.now,
                          platform_ticket_id=arrival.platform.ticket_id,
                          platform_account_id=arrival.platform.account_id)
    session.add(row)
    ticket = lifecycle.open_ticket(session, row, arrival.now, arrival.sent_at)
    _flag_repaired(ticket, arrival.repaired)
    session.flush()
    return row, Received(ticket.id, ticket.status, duplicate=False, enqueue=True)


def _append(session: Session, row: ConversationRow, conversation: Conversation, arrival: Arrival) -> Received:
    ticket = session.execute(select(Ticket).where(Ticket.conversation_id == row.id).with_for_update()).scalar_one()
    row.platform_ticket_id = row.platform_ticket_id or arrival.platform.ticket_id
    row.platform_account_id = row.platform_account_id or arrival.platform.account_id
    stored = Conversation.from_dicts(row.messages)
    fresh = new_messages(stored.messages, conversation.messages)
    if not fresh:  # everything in it is there already: a repost
        return Received(ticket.id, ticket.status, duplicate=True, enqueue=False)
    merged = Conversation((*stored.messages, *fresh))
    row.messages, row.text, row.content_hash = merged.to_dicts(), merged.transcript(), content_hash(merged)
    _flag_repaired(ticket, arrival.repaired)
    enqueue = lifecycle.append_message(session, ticket, arrival.now, arrival.sent_at)
    return Received(ticket.id, ticket.status, duplicate=False, enqueue=enqueue)


def _receive_once(session: Session, source: str, external_id: str, conversation: Conversation,
                  keys: Sequence[str], customer: dict[str, Any] | None, raw: dict[str, Any] | None,
                  arrival: Arrival) -> Received:
    seen = session.execute(
        select(Ticket).join(IntakeKey, IntakeKey.conversation_id == Ticket.conversation_id)
        .where(IntakeKey.source == source, IntakeKey.key.in_(keys))
    ).scalars().first()
    if seen is not None:
        return Received(seen.id, seen.status, duplicate=True, enqueue=False)
    row = session.execute(
        select(ConversationRow).where(ConversationRow.source == source, ConversationRow.external_id == external_id)
        .with_for_update()
    ).scalar_one_or_none()
    if row is None:
        row, received = _new_conversation(session, source, external_id, conversation, customer, raw, arrival)
    else:
        received = _append(session, row, conversation, arrival)
    session.add_all(IntakeKey(source=source, key=key, conversation_id=row.id, created_at=arrival.now) for key in keys)
    session.flush()
    return received


def receive(sessions: sessionmaker[Session], source: str, external_id: str, conversation: Conversation,
            keys: Sequence[str], now: datetime, *, customer: dict[str, Any] | None = None,
            raw: dict[str, Any] | None = None, repaired: Sequence[str] = (), sent_at: datetime | None = None,
            platform: PlatformIds = NO_PLATFORM_IDS) -> Received:
    """Store ``conversation`` (new messages) under ``source`` + ``external_id``, exactly once per key
    (``repaired``, ``sent_at`` and ``platform`` as for :class:`Arrival`)."""
    arrival = Arrival(now, repaired, sent_at, platform)
    for _ in range(RACE_RETRIES):
        try:
            with sessions.begin() as session:
                return _receive_once(session, source, external_id, conversation, keys, customer, raw, arrival)
        except IntegrityError:  # a concurrent delivery inserted the same row first: read its result
            continue
    raise ConflictError(f"{source}/{external_id}: could not store the message after {RACE_RETRIES} tries")


def submit(sessions: sessionmaker[Session], source: str, external_id: str, conversation: Conversation,
           now: datetime, *, customer: dict[str, Any] | None = None, repaired: Sequence[str] = (),
           sent_at: datetime | None = None) -> Received:
    """Store a submitted conversation and its ``queued`` ticket (its SLA counting from ``sent_at`` when given);
    the same source + id returns the existing one (``duplicate``) and enqueues nothing. ``repaired`` as for
    :class:`Arrival`."""
    existing = _find(sessions, source, external_id)
    if existing is not None:
        return existing
    try:
        with sessions.begin() as session:  # the line is the conversation: no raw copy
            return _new_conversation(session, source, external_id, conversation, customer, None,
                                     Arrival(now, repaired, sent_at))[1]
    except IntegrityError:  # a concurrent submit of the same conversation won the race
        found = _find(sessions, source, external_id)
        if found is None:
            raise
        return found


def _find(sessions: sessionmaker[Session], source: str, external_id: str) -> Received | None:
    with sessions() as session:
        found = session.execute(
            select(Ticket.id, Ticket.status).join(Ticket.conversation)
            .where(ConversationRow.source == source, ConversationRow.external_id == external_id)
        ).first()
    return None if found is None else Received(found.id, found.status, duplicate=True, enqueue=False)
