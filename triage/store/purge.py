"""Retention: delete old conversations with everything that hangs off them, and log each purge.

A conversation is purged when it was received before the cutoff and its ticket is finished
(``routed``, ``needs_review``, ``corrected`` or ``resolved``) and was last changed before the cutoff, so
nothing still in the pipeline, and nothing a person or a job touched since, is deleted. With it
go its ticket, the ticket's attempts, audit events and outbox deliveries, and its intake keys. No ticket is left
to hang an audit event on, so each purge is a row in ``purges``: when, by whom, the cutoff and
what it deleted, counted (never what the conversations said)::

    report = purge_before(sessions, datetime(2026, 1, 1, tzinfo=UTC), actor="cli")
    print(report.summary())

Deletion goes in batches, each one transaction that also adds its counts to the purge's row,
so an interrupted purge has deleted exactly what its row says and can simply be run again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, Integer, String, and_, delete, exists, func, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from triage.clock import Clock
from triage.states.tickets import FINISHED
from triage.store.models import Attempt, Base, BatchCall, Conversation, Delivery, Event, IntakeKey, Ticket, utcnow

#: Conversations deleted per transaction.
PURGE_BATCH = 500
Progress = Callable[[int, int], None]


class PurgeRecord(Base):
    """One purge: the cutoff, who ran it, and how many rows of each kind it deleted."""

    __tablename__ = "purges"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    actor: Mapped[str] = mapped_column(String(64))
    before: Mapped[datetime]
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    conversations: Mapped[int] = mapped_column(Integer, default=0)
    tickets: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    events: Mapped[int] = mapped_column(Integer, default=0)
    intake_keys: Mapped[int] = mapped_column(Integer, default=0)
    deliveries: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


@dataclass(frozen=True)
class PurgeCounts:
    """Rows of each kind (deleted, or that a dry run would delete)."""

    conversations: int = 0
    tickets: int = 0
    attempts: int = 0
    events: int = 0
    intake_keys: int = 0
    deliveries: int = 0

    def __add__(self, other: PurgeCounts) -> PurgeCounts:
        return PurgeCounts(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def describe(self) -> str:
        return (f"{self.conversations} conversations ({self.tickets} tickets, {self.attempts} attempts, "
                f"{self.events} events, {self.deliveries} deliveries, {self.intake_keys} intake keys)")


@dataclass(frozen=True)
class PurgeReport:
    """What a purge did; ``purge_id`` is its row in ``purges`` (``None`` for a dry run)."""

    before: datetime
    counts: PurgeCounts
    kept: int
    dry_run: bool = False
    purge_id: int | None = None

    def summary(self) -> str:
        cutoff = self.before.isoformat()
        kept = f"; kept {self.kept} received before then whose ticket is not finished or changed since"
        if self.dry_run:
            return f"would purge {self.counts.describe()} received before {cutoff}{kept if self.kept else ''}"
        return (f"purged {self.counts.describe()} received before {cutoff}{kept if self.kept else ''}; "
                f"logged as purge {self.purge_id}")


def _expired(before: datetime) -> ColumnElement[bool]:
    return (Conversation.received_at < before) & Ticket.status.in_(FINISHED) & (Ticket.updated_at < before)


def _selected(session: Session, before: datetime) -> tuple[list[int], int]:
    """Ids of the conversations to purge, oldest first, and how many older ones are kept."""
    joined = select(Conversation.id).join(Ticket, Ticket.conversation_id == Conversation.id)
    ids = list(session.scalars(joined.where(_expired(before)).order_by(Conversation.id)))
    older = session.scalar(select(func.count()).select_from(Conversation).where(Conversation.received_at < before))
    return ids, (older or 0) - len(ids)


def _remove(session: Session, model: type[Base], condition: ColumnElement[bool], dry_run: bool) -> int:
    """Delete the rows of ``model`` matching ``condition`` (``dry_run``: count them); how many."""
    if dry_run:
        return session.scalar(select(func.count()).select_from(model).where(condition)) or 0
    return cast(CursorResult[Any], session.execute(delete(model).where(condition))).rowcount


def _purge_batch(session: Session, candidates: Sequence[int], before: datetime, dry_run: bool) -> PurgeCounts:
    # Checked again under a row lock: a ticket reprocessed since the selection is no longer expired.
    tickets = session.execute(
        select(Ticket.id, Ticket.conversation_id).join(Conversation, Ticket.conversation_id == Conversation.id)
        .where(Conversation.id.in_(candidates), _expired(before)).with_for_update(of=Ticket)).all()
    ticket_ids = [row.id for row in tickets]
    conversation_ids = [row.conversation_id for row in tickets]
    batch_ids = session.scalars(select(Attempt.batch_id).distinct()
                                .where(Attempt.ticket_id.in_(ticket_ids), Attempt.batch_id.is_not(None))).all()
    counts = PurgeCounts(
        deliveries=_remove(session, Delivery, Delivery.ticket_id.in_(ticket_ids), dry_run),
        events=_remove(session, Event, Event.ticket_id.in_(ticket_ids), dry_run),
        attempts=_remove(session, Attempt, Attempt.ticket_id.in_(ticket_ids), dry_run),
        tickets=_remove(session, Ticket, Ticket.id.in_(ticket_ids), dry_run),
        intake_keys=_remove(session, IntakeKey, IntakeKey.conversation_id.in_(conversation_ids), dry_run),
        conversations=_remove(session, Conversation, Conversation.id.in_(conversation_ids), dry_run),
    )
    # a batch call's raw output goes with the last of its tickets (not counted: it is part of their attempts)
    if not dry_run:
        _remove(session, BatchCall, and_(BatchCall.id.in_(batch_ids),
                                         ~exists().where(Attempt.batch_id == BatchCall.id)), dry_run)
    return counts


def _add_to_record(session: Session, purge_id: int, counts: PurgeCounts) -> None:
    columns = {f.name: getattr(PurgeRecord, f.name) + getattr(counts, f.name) for f in fields(counts)}
    session.execute(update(PurgeRecord).where(PurgeRecord.id == purge_id).values(**columns))


def purge_before(sessions: sessionmaker[Session], before: datetime, *, actor: str, dry_run: bool = False,
                 progress: Progress | None = None, batch_size: int = PURGE_BATCH,
                 clock: Clock) -> PurgeReport:
    """Delete the conversations received before ``before`` whose tickets are finished (see the module).

    ``dry_run`` only counts. ``progress(done, total)`` is called after each batch.
    """
    if before.tzinfo is None:
        raise ValueError("naive datetime given; use an aware UTC datetime")
    with sessions() as session:
        candidates, kept = _selected(session, before)
    purge_id = None
    if not dry_run:
        with sessions.begin() as session:
            record = PurgeRecord(actor=actor, before=before, started_at=clock.now())
            session.add(record)
            session.flush()
            purge_id = record.id
    total = PurgeCounts()
    for start in range(0, len(candidates), batch_size):
        batch = candidates[start:start + batch_size]
        with sessions.begin() as session:
            counts = _purge_batch(session, batch, before, dry_run)
            if purge_id is not None:
                _add_to_record(session, purge_id, counts)
        total += counts
        if progress:
            progress(min(start + batch_size, len(candidates)), len(candidates))
    if purge_id is not None:
        with sessions.begin() as session:
            session.execute(update(PurgeRecord).where(PurgeRecord.id == purge_id).values(finished_at=clock.now()))
    kept += len(candidates) - total.conversations
    return PurgeReport(before, total, kept, dry_run, purge_id)

