"""Taking in a conversation durably and exactly once: a ``triage submit`` line or a platform's message.

A platform message arrives with its *intake keys* (the platform's delivery or event id, and the
source + conversation + message id). A key seen before means a redelivery: the existing ticket
is returned and nothing is enqueued. A new message on a known conversation is appended to it and
handed to :func:`triage.tickets.lifecycle.append_message`, which decides whether a new
extraction starts. Messages the conversation already ends with are not appended again (a
producer that reposts the same body under a new delivery id, or resends the history with one new
message): see :func:`new_messages`. Two identical deliveries at once still make one ticket: the
unique keys decide, and the loser reads the winner's row::

    received = receive(sessions, "zendesk", "35436", Conversation.from_text("..."), ["event:01HN"], now,
                       outbox=app.outbox)
    if received.enqueue:
        publish(received.ticket_id)   # after the commit, never before

A new conversation is stored with Core statements (no ORM objects): one multi-row ``INSERT ...
ON CONFLICT DO NOTHING RETURNING`` of conversations and one ``INSERT ... RETURNING`` of their
tickets, for one conversation (a webhook) or a whole chunk of ``triage submit`` lines
(:func:`submit_chunk`: one transaction per chunk, a savepoint per line only when the database
refuses one of them).
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnDefault, ColumnElement, Select, Table, bindparam, exists, func, insert, select, true
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from triage.conversation import Conversation, Message
from triage.errors import ConflictError
from triage.outbox.outbox import Outbox
from triage.states.tickets import Flag, Status
from triage.store.db import insert_ignoring_conflicts, retry_disconnect
from triage.store.models import CONVERSATIONS, INTAKE_KEYS, TICKETS, Ticket
from triage.store.models import Conversation as ConversationRow
from triage.tickets import lifecycle

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


@dataclass(frozen=True)
class NewConversation:
    """A conversation to store under ``source`` + ``external_id`` if it is not there yet (``raw``: the platform's
    payload, none for a submission)."""

    source: str
    external_id: str
    conversation: Conversation
    arrival: Arrival
    customer: dict[str, Any] | None = None
    raw: dict[str, Any] | None = None

    @property
    def key(self) -> tuple[str, str]:
        return self.source, self.external_id


def _conversation_values(item: NewConversation) -> dict[str, Any]:
    conversation, arrival = item.conversation, item.arrival
    return {"source": item.source, "external_id": item.external_id, "customer": item.customer,
            "messages": conversation.to_dicts(), "text": conversation.transcript(), "raw_payload": item.raw,
            "content_hash": content_hash(conversation), "received_at": arrival.now,
            "platform_ticket_id": arrival.platform.ticket_id, "platform_account_id": arrival.platform.account_id}


def _ticket_values(conversation_id: int, item: NewConversation) -> dict[str, Any]:
    repaired = item.arrival.repaired
    flags = lifecycle.with_flag({}, Flag.TEXT_REPAIRED, {"fields": sorted(set(repaired))}) if repaired else {}
    return {"conversation_id": conversation_id,
            **lifecycle.new_ticket(item.external_id, item.conversation.to_dicts(), item.arrival.now,
                                   item.arrival.sent_at, flags)}


def _store_new(session: Session, items: Sequence[NewConversation]) -> dict[tuple[str, str], tuple[int, Received]]:
    """Insert the conversations of ``items`` (distinct keys) that are not stored yet, each with its ``queued``
    ticket, in two statements (each a multi-row INSERT of one cached form); by key, the new conversation's id
    and ticket (a key already stored is absent)."""
    if not items:
        return {}
    dialect = session.get_bind().dialect.name
    inserted = session.execute(
        insert_ignoring_conflicts(dialect, CONVERSATIONS, ("source", "external_id"))
        .returning(CONVERSATIONS.c.id, CONVERSATIONS.c.source, CONVERSATIONS.c.external_id),
        [_conversation_values(item) for item in items],
    ).all()
    conversation_ids = {(row.source, row.external_id): row.id for row in inserted}
    fresh = [item for item in items if item.key in conversation_ids]
    if not fresh:
        return {}
    created = session.execute(insert(TICKETS).returning(TICKETS.c.id, TICKETS.c.conversation_id),
                              [_ticket_values(conversation_ids[item.key], item) for item in fresh]).all()
    ticket_ids = {row.conversation_id: row.id for row in created}
    return {key: (conversation_id, Received(ticket_ids[conversation_id], Status.QUEUED, duplicate=False, enqueue=True))
            for key, conversation_id in conversation_ids.items()}


def _append(session: Session, outbox: Outbox, row: ConversationRow, conversation: Conversation,
            arrival: Arrival) -> Received:
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
    enqueue = lifecycle.append_message(session, ticket, arrival.now, arrival.sent_at, outbox=outbox)
    return Received(ticket.id, ticket.status, duplicate=False, enqueue=enqueue)


def _receive_once(session: Session, outbox: Outbox, item: NewConversation, keys: Sequence[str]) -> Received:
    if keys and session.get_bind().dialect.name == "postgresql":
        first = _store_first_delivery(session, item, keys)
        return first if first is not None else _append_delivery(session, outbox, item, keys)
    seen = session.execute(_seen(item.source, INTAKE_KEYS.c.key.in_(keys))).first()
    if seen is not None:
        return Received(seen.id, seen.status, duplicate=True, enqueue=False)
    new = _store_new(session, [item]).get(item.key)
    if new is None:  # the conversation exists: append to it
        return _append_delivery(session, outbox, item, keys)
    conversation_id, received = new
    _record_keys(session, item, keys, conversation_id)
    return received


def _seen(source: str | ColumnElement[str], key_matches: ColumnElement[bool]) -> Select[Any]:
    """The ticket of a delivery already taken in from ``source`` under a key ``key_matches`` (a redelivery)."""
    return (select(TICKETS.c.id, TICKETS.c.status)
            .select_from(TICKETS.join(INTAKE_KEYS, INTAKE_KEYS.c.conversation_id == TICKETS.c.conversation_id))
            .where(INTAKE_KEYS.c.source == source, key_matches).limit(1))


def _row(table: Table, values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with the scalar defaults of ``table``'s other columns: an INSERT nested in a CTE gets no
    Python-side defaults from SQLAlchemy."""
    defaults = {column.name: column.default.arg for column in table.c if column.name not in values
                and isinstance(column.default, ColumnDefault) and column.default.is_scalar}
    return {**values, **defaults}


def _bound(table: Table, names: Sequence[str], prefix: str) -> list[ColumnElement[Any]]:
    """Bound values for ``names`` of ``table``'s columns, typed as the columns (a SELECT to insert from)."""
    return [bindparam(f"{prefix}{name}", type_=table.c[name].type).label(name) for name in names]


@functools.cache
def _first_delivery(conversation_names: tuple[str, ...], ticket_names: tuple[str, ...]) -> Select[Any]:
    """:func:`_store_first_delivery`'s statement, built once (building the CTEs costs more CPU than running
    them) and bound at each call: ``c_<column>`` and ``t_<column>`` values, ``source``, ``keys`` (an array),
    ``now``."""
    source = bindparam("source", type_=INTAKE_KEYS.c.source.type)
    keys = bindparam("keys", type_=postgresql.ARRAY(INTAKE_KEYS.c.key.type))
    seen = _seen(source, INTAKE_KEYS.c.key == func.any(keys)).cte("seen")
    stored = (postgresql.insert(CONVERSATIONS)
              .from_select(conversation_names, select(*_bound(CONVERSATIONS, conversation_names, "c_"))
                           .where(~exists(select(seen.c.id))), include_defaults=False)
              .on_conflict_do_nothing(index_elements=["source", "external_id"])
              .returning(CONVERSATIONS.c.id).cte("stored"))
    opened = (insert(TICKETS)
              .from_select(["conversation_id", *ticket_names],
                           select(stored.c.id, *_bound(TICKETS, ticket_names, "t_")), include_defaults=False)
              .returning(TICKETS.c.id, TICKETS.c.conversation_id).cte("opened"))
    new_keys = select(func.unnest(keys).label("key")).subquery("new_keys")
    recorded = (insert(INTAKE_KEYS)
                .from_select(["source", "key", "conversation_id", "created_at"],
                             select(source, new_keys.c.key, opened.c.conversation_id,
                                    bindparam("now", type_=INTAKE_KEYS.c.created_at.type))
                             .select_from(opened).join(new_keys, true()), include_defaults=False)
                .cte("recorded"))
    return select(select(seen.c.id).scalar_subquery().label("seen_id"),
                  select(seen.c.status).scalar_subquery().label("seen_status"),
                  select(opened.c.id).scalar_subquery().label("ticket_id")).add_cte(recorded)


def _store_first_delivery(session: Session, item: NewConversation, keys: Sequence[str]) -> Received | None:
    """PostgreSQL: the redelivery check and a new conversation's three inserts (conversation, ticket, intake
    keys) as one statement of data-modifying CTEs, so the common delivery is one round trip. ``None``: the
    keys are new but the conversation is stored already (a new message on it), for the append path."""
    conversation = _row(CONVERSATIONS, _conversation_values(item))
    ticket = _row(TICKETS, {name: value for name, value in _ticket_values(0, item).items()
                             if name != "conversation_id"})
    statement = _first_delivery(tuple(conversation), tuple(ticket))
    row = session.execute(statement, {**{f"c_{name}": value for name, value in conversation.items()},
                                      **{f"t_{name}": value for name, value in ticket.items()},
                                      "source": item.source, "keys": list(keys), "now": item.arrival.now}).one()
    if row.seen_id is not None:
        return Received(row.seen_id, row.seen_status, duplicate=True, enqueue=False)
    if row.ticket_id is not None:
        return Received(row.ticket_id, Status.QUEUED, duplicate=False, enqueue=True)
    return None


def _append_delivery(session: Session, outbox: Outbox, item: NewConversation, keys: Sequence[str]) -> Received:
    """A new message on a stored conversation, its keys recorded."""
    row = session.execute(
        select(ConversationRow).where(ConversationRow.source == item.source,
                                      ConversationRow.external_id == item.external_id).with_for_update()
    ).scalar_one()
    received = _append(session, outbox, row, item.conversation, item.arrival)
    _record_keys(session, item, keys, row.id)
    return received


def _record_keys(session: Session, item: NewConversation, keys: Sequence[str], conversation_id: int) -> None:
    session.execute(insert(INTAKE_KEYS).values([{"source": item.source, "key": key, "conversation_id": conversation_id,
                                           "created_at": item.arrival.now} for key in keys]))


@retry_disconnect
def receive(sessions: sessionmaker[Session], source: str, external_id: str, conversation: Conversation,
            keys: Sequence[str], now: datetime, *, customer: dict[str, Any] | None = None,
            raw: dict[str, Any] | None = None, repaired: Sequence[str] = (), sent_at: datetime | None = None,
            platform: PlatformIds = NO_PLATFORM_IDS, outbox: Outbox) -> Received:
    """Store ``conversation`` (new messages) under ``source`` + ``external_id``, exactly once per key
    (``repaired``, ``sent_at`` and ``platform`` as for :class:`Arrival`); a new message on a stored ticket is a
    decision (:func:`triage.tickets.lifecycle.append_message`) recorded into ``outbox``."""
    item = NewConversation(source, external_id, conversation, Arrival(now, repaired, sent_at, platform), customer, raw)
    for _ in range(RACE_RETRIES):
        try:
            with sessions.begin() as session:
                return _receive_once(session, outbox, item, keys)
        except IntegrityError:  # a concurrent delivery inserted the same key first: read its result
            continue
    raise ConflictError(f"{source}/{external_id}: could not store the message after {RACE_RETRIES} tries")


def submit(sessions: sessionmaker[Session], source: str, external_id: str, conversation: Conversation,
           now: datetime, *, customer: dict[str, Any] | None = None, repaired: Sequence[str] = (),
           sent_at: datetime | None = None) -> Received:
    """Store a submitted conversation and its ``queued`` ticket (its SLA counting from ``sent_at`` when given);
    the same source + id returns the existing one (``duplicate``) and enqueues nothing. ``repaired`` as for
    :class:`Arrival`."""
    outcome = submit_chunk(sessions, [NewConversation(source, external_id, conversation,
                                                      Arrival(now, repaired, sent_at), customer)])[0]
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


@retry_disconnect
def submit_chunk(sessions: sessionmaker[Session], items: Sequence[NewConversation]) -> list[Received | DBAPIError]:
    """Store a chunk of submitted conversations (the line is the conversation: no raw copy) in one transaction,
    one outcome per item in order: its new ticket, or the existing one (``duplicate``: stored before, or earlier
    in the chunk), or the error the database gave for that item alone.

    The chunk is tried whole (three statements); when the database refuses it, each item is stored again in a
    savepoint of its own, so a refused item costs only itself.
    """
    try:
        with sessions.begin() as session:
            return list(_submit_chunk_once(session, items))
    except DBAPIError:
        with sessions.begin() as session:
            return [_submit_in_savepoint(session, item) for item in items]


def _submit_in_savepoint(session: Session, item: NewConversation) -> Received | DBAPIError:
    try:
        with session.begin_nested():
            return _submit_chunk_once(session, [item])[0]
    except DBAPIError as exc:
        return exc


def _submit_chunk_once(session: Session, items: Sequence[NewConversation]) -> list[Received]:
    first: dict[tuple[str, str], NewConversation] = {}
    for item in items:
        first.setdefault(item.key, item)
    unique = list(first.values())
    known = _existing(session, [item.key for item in unique])
    new = _store_new(session, [item for item in unique if item.key not in known])
    known |= _existing(session, [item.key for item in unique if item.key not in known and item.key not in new])
    outcomes, seen = [], set()
    for item in items:
        if item.key in new and item.key not in seen:
            outcomes.append(new[item.key][1])
        else:
            found = new[item.key][1] if item.key in new else known[item.key]
            outcomes.append(Received(found.ticket_id, found.status, duplicate=True, enqueue=False))
        seen.add(item.key)
    return outcomes


def _existing(session: Session, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Received]:
    """The tickets of the conversations already stored under ``keys``."""
    if not keys:
        return {}
    wanted = set(keys)
    rows = session.execute(
        select(TICKETS.c.id, TICKETS.c.status, CONVERSATIONS.c.source, CONVERSATIONS.c.external_id)
        .select_from(TICKETS.join(CONVERSATIONS, CONVERSATIONS.c.id == TICKETS.c.conversation_id))
        .where(CONVERSATIONS.c.source.in_({source for source, _ in keys}),
               CONVERSATIONS.c.external_id.in_({external_id for _, external_id in keys}))
    ).all()
    return {(row.source, row.external_id): Received(row.id, row.status, duplicate=True, enqueue=False)
            for row in rows if (row.source, row.external_id) in wanted}
