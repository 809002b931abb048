"""SQLAlchemy models: conversations, tickets, attempts (every LLM call) and audit events.

Alembic owns the tables (``migrations/``); ``alembic check`` must find nothing to generate
from these models. A ticket's extracted fields are the whole validated ticket, stored as JSON in
``fields``: whatever the schema file defines, no column is named after a schema field. Statuses
and their transitions belong to :mod:`triage.states.tickets`; only :mod:`triage.tickets.lifecycle`
writes them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar, cast

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: The largest value an ``Integer`` column (every id here) holds on PostgreSQL; SQLite holds more.
MAX_ID = 2**31 - 1


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime, dict[str, Any]: JSON, list[Any]: JSON}


class Conversation(Base):
    __tablename__ = "conversations"
    __table_args__ = (UniqueConstraint("source", "external_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(64))
    external_id: Mapped[str] = mapped_column(String(255))
    customer: Mapped[dict[str, Any] | None]
    messages: Mapped[list[Any]]
    text: Mapped[str] = mapped_column(Text)
    raw_payload: Mapped[dict[str, Any] | None]
    content_hash: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: Where the conversation lives on its platform (the id its REST API takes, and its account where
    #: it has several), stored at intake so a write-back knows where to write; None for submissions.
    platform_ticket_id: Mapped[str | None] = mapped_column(String(255))
    platform_account_id: Mapped[str | None] = mapped_column(String(255))

    ticket: Mapped[Ticket] = relationship(back_populates="conversation")


#: The trigram index behind the desk's search (``pg_trgm``): PostgreSQL only, so SQLite and
#: ``alembic check`` on it leave it out (``migrations/env.py``).
SEARCH_INDEX = "ix_tickets_search_text_trgm"
POSTGRESQL_ONLY_INDEXES = frozenset({SEARCH_INDEX})


class Ticket(Base):
    __tablename__ = "tickets"
    #: The sweep's two questions: what waits (status, updated_at) and whose lease ran out (status, lease_until);
    #: and the search's trigram index (PostgreSQL only).
    __table_args__ = (Index("ix_tickets_status_updated_at", "status", "updated_at"),
                      Index("ix_tickets_status_lease_until", "status", "lease_until"),
                      Index(SEARCH_INDEX, "search_text", postgresql_using="gin",
                            postgresql_ops={"search_text": "gin_trgm_ops"}).ddl_if(dialect="postgresql"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id"), unique=True)
    status: Mapped[str] = mapped_column(String(20))
    #: The whole validated ticket (every schema field), or None before the first extraction.
    fields: Mapped[dict[str, Any] | None]
    route: Mapped[str | None] = mapped_column(String(64), index=True)
    priority: Mapped[str | None] = mapped_column(String(16))
    sla_due_at: Mapped[datetime | None]
    #: When the customer's wait began, the start of the SLA: the conversation's first customer message as the
    #: platform dates it, else when triage received it; a reopening message starts it again.
    sla_started_at: Mapped[datetime]
    extractor: Mapped[str | None] = mapped_column(String(16))
    model: Mapped[str | None] = mapped_column(String(64))
    schema_version: Mapped[str | None] = mapped_column(String(32))
    prompt_version: Mapped[str | None] = mapped_column(String(32))
    fallback_reason: Mapped[str | None] = mapped_column(String(64))
    fallback_detail: Mapped[str | None] = mapped_column(Text)
    fallback_raw_output: Mapped[str | None] = mapped_column(Text)
    run: Mapped[int] = mapped_column(Integer, default=1)
    lease_token: Mapped[str | None] = mapped_column(String(36))
    lease_until: Mapped[datetime | None]
    next_attempt_at: Mapped[datetime | None]
    requeue_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    resolved_at: Mapped[datetime | None]
    assigned_to: Mapped[str | None] = mapped_column(String(64))
    assigned_at: Mapped[datetime | None]
    #: The conversation was cut to fit the model (see ``extraction.max_input_chars``).
    trimmed: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    #: The retry-fallback job already gave this ticket its one fresh LLM pass.
    fallback_retried: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    #: What people should know about how this ticket was read, by name (``triage.states.tickets.Flag``),
    #: each with its detail, e.g. ``{"injection_suspected": {"pattern": "...", "text": "..."}}``.
    flags: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, server_default="{}")
    #: What the desk's search reads: the conversation and the field values, case-folded
    #: (:mod:`triage.store.search`), so SQLite and PostgreSQL find the same tickets.
    search_text: Mapped[str] = mapped_column(Text, default="", server_default="")
    #: De-duplication (:mod:`triage.extraction.dedupe`): the hash of the conversation as extracted (normalised
    #: text, schema and prompt versions), and the ticket whose LLM extraction this one reused (``extractor``
    #: ``dedupe``); purging that ticket leaves None here.
    dedupe_key: Mapped[str | None] = mapped_column(String(64), index=True)
    dedupe_of: Mapped[int | None] = mapped_column(ForeignKey("tickets.id", ondelete="SET NULL"))
    #: How sure the machine is of its routing, in [0, 1]: per routing field, and the ticket's own (its lowest
    #: routing field). None on a ticket no machine routed.
    confidence: Mapped[float | None] = mapped_column(Float)
    field_confidence: Mapped[dict[str, float] | None] = mapped_column(JSON)
    #: The autonomy level applied when the ticket was routed (auto, suggest, review, shadow): how much of
    #: the decision went out to the helpdesk. None before routing.
    autonomy: Mapped[str | None] = mapped_column(String(16))
    #: What the machine knew when it decided (triage.confidence.signals.SignalRecord): its extractor group, its
    #: value of each routing field and their signals; what ``triage calibrate`` learns from. Kept after a correction.
    confidence_signals: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    conversation: Mapped[Conversation] = relationship(back_populates="ticket")
    attempts: Mapped[list[Attempt]] = relationship(back_populates="ticket", order_by="Attempt.id")
    events: Mapped[list[Event]] = relationship(back_populates="ticket", order_by="Event.id")


class IntakeKey(Base):
    """A platform delivery or message already taken in: the same key again is a redelivery."""

    __tablename__ = "intake_keys"
    __table_args__ = (UniqueConstraint("source", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(255))
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class JobLock(Base):
    """One row per scheduled job: a run holds it until ``locked_until``, so two beats never run it twice."""

    __tablename__ = "job_locks"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(64))
    locked_until: Mapped[datetime | None]


class DeskSession(Base):
    """A desk sign-in: the cookie holds its id (signed), and only while this row is there does it count. Signing
    out deletes it at once; it ends at ``expires_at`` (``api.session_hours``), and with its token: the token's
    fingerprint (an HMAC under the session secret) must still be a configured token's. The retention job
    deletes the rows past their end."""

    __tablename__ = "desk_sessions"

    #: SHA-256 of the cookie's session id: the table alone lets nobody forge a cookie.
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    actor: Mapped[str] = mapped_column(String(255))
    token_fingerprint: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)


class BatchCall(Base):
    """One LLM call that answered several conversations: its raw output, stored once; each
    conversation's :class:`Attempt` points here (``batch_id``) and holds its share of the tokens."""

    __tablename__ = "batch_calls"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    raw_output: Mapped[str | None] = mapped_column(Text)
    finish_reason: Mapped[str | None] = mapped_column(String(32))
    prompt_tokens: Mapped[int | None] = mapped_column(Integer)
    completion_tokens: Mapped[int | None] = mapped_column(Integer)
    reasoning_tokens: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    max_completion_tokens: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Attempt(Base):
    """One LLM call made for a ticket (``run`` counts extraction runs of the ticket); an item of a
    batch call points to it (``batch_id``, ``batch_size``) and holds its share of the tokens."""

    __tablename__ = "attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    run: Mapped[int] = mapped_column(Integer)
    n: Mapped[int] = mapped_column(Integer)
    model: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))
    raw_output: Mapped[str | None] = mapped_column(Text)
    finish_reason: Mapped[str | None] = mapped_column(String(32))
    error: Mapped[str | None] = mapped_column(Text)
    status_code: Mapped[int | None] = mapped_column(Integer)
    prompt_tokens: Mapped[int | None] = mapped_column(Integer)
    completion_tokens: Mapped[int | None] = mapped_column(Integer)
    reasoning_tokens: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    max_completion_tokens: Mapped[int | None] = mapped_column(Integer)
    #: Which parser path read the answer (``strict``/``tolerant``), and every repair it needed.
    parse_path: Mapped[str | None] = mapped_column(String(16))
    repairs: Mapped[list[Any] | None]
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("batch_calls.id"), index=True)
    batch_size: Mapped[int | None] = mapped_column(Integer)
    #: The confidence of this attempt's answer, as on the ticket it decided.
    confidence: Mapped[float | None] = mapped_column(Float)
    field_confidence: Mapped[dict[str, float] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    ticket: Mapped[Ticket] = relationship(back_populates="attempts")
    batch: Mapped[BatchCall | None] = relationship()


class Event(Base):
    """Audit trail: who (``actor``) did what (``kind``) to a ticket, before and after."""

    __tablename__ = "events"
    #: The learned extractor's retraining counts the reviews (kinds) after an event id.
    __table_args__ = (Index("ix_events_kind_id", "kind", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    actor: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    before: Mapped[dict[str, Any] | None]
    after: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    ticket: Mapped[Ticket] = relationship(back_populates="events")


class Delivery(Base):
    """One outbound delivery of the outbox (:mod:`triage.outbox`): a write-back, a signed event or an
    alert, written in the same transaction as the decision (``event_id``) that needs it.

    ``target`` names where it goes without a secret: the platform, ``endpoint:<hash of the URL>`` or
    ``alerts``; ``target_name`` is what people see. ``payload`` is what every attempt sends;
    ``steps_done`` the write-back steps already done. ``once_key`` makes an alert unique per ticket.
    ``transient_attempts`` counts the attempts that met a transient answer (they spend time, not the
    ``writeback.max_attempts`` budget); ``retried_at`` is the last ``triage deliveries --retry``, from which
    (else from ``created_at``) ``writeback.give_up_after_hours`` runs.
    """

    __tablename__ = "deliveries"
    __table_args__ = (Index("ix_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
                      UniqueConstraint("ticket_id", "once_key"))

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    event_id: Mapped[int | None] = mapped_column(ForeignKey("events.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    target: Mapped[str] = mapped_column(String(64))
    target_name: Mapped[str] = mapped_column(String(255))
    topic: Mapped[str] = mapped_column(String(32))
    once_key: Mapped[str | None] = mapped_column(String(96))
    payload: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    transient_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    steps_done: Mapped[list[Any]] = mapped_column(JSON, default=list)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_status: Mapped[int | None] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime | None]
    lease_token: Mapped[str | None] = mapped_column(String(36))
    lease_until: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    retried_at: Mapped[datetime | None]


def table_of(model: type[Base]) -> Table:
    """``model``'s Core table: the hot path's statements name its columns, not the mapped class's, so
    SQLAlchemy skips the ORM's per-statement work (attribute coercion, an UPDATE's session evaluator)."""
    return cast(Table, model.__table__)


TICKETS = table_of(Ticket)
CONVERSATIONS = table_of(Conversation)
INTAKE_KEYS = table_of(IntakeKey)
ATTEMPTS = table_of(Attempt)
EVENTS = table_of(Event)
