"""The outbox: deliveries recorded in the decision's transaction, published after its commit, then
leased, stepped and settled under a lease.

:meth:`Outbox.record_decision` (:meth:`Outbox.record_run_decision` for a worker's run) is what
:mod:`triage.tickets.lifecycle` calls for every audited decision, with the outbox its caller hands it
(every recording function there requires one: no session records a decision without it); it adds
the rows the decision needs (:mod:`triage.outbox.rules`). The ids of new rows are kept on the
session and published when, and only when, it commits (:meth:`Outbox.install` listens on the
app's sessionmaker): nothing is sent for a decision that did not commit.

A worker then takes a delivery the way it takes a ticket: :meth:`Outbox.lease` hands out a
lease; every later write (a step done, the end, a retry) is conditional on it::

    lease = outbox.lease(delivery_id, now)          # a DeliveryLease, a Wait or a Skip
    outbox.step_done(lease, "tags", now)            # LeaseLostError: another worker holds it now
    outbox.settle(lease, now, error=exc)            # delivered, gone, skipped, failed or pending again

A ticket's write-backs apply in order: a write-back runs only once no older one of the same
ticket and platform is unfinished; an older one that has not written anything yet is superseded
by the newer (which carries the whole current decision), and one that started writing is
finished first. The tags a write-back removes are those of the last one that wrote anything.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, event, or_, select
from sqlalchemy.orm import Session, sessionmaker

from triage.delivery import (
    DeliveryError,
    GoneDeliveryError,
    PlatformRef,
    RetryableDeliveryError,
    SkippedDeliveryError,
    TransientDeliveryError,
    Write,
    event_body,
    p1_text,
    sla_breach_text,
    ticket_link,
)
from triage.delivery.alerts import TARGET as ALERTS_TARGET
from triage.errors import ConflictError, NotFoundError
from triage.outbox import rules
from triage.outbox.retry import GiveUp, RetryPolicy
from triage.settings import Settings
from triage.states.deliveries import (
    FINAL,
    NOT_APPLIED,
    RETRYABLE_BY_HAND,
    AlertTopic,
    DeliveryKind,
    DeliveryStatus,
    transition,
)
from triage.states.tickets import EventKind
from triage.store.deliveries import delivery_view
from triage.store.models import Delivery, Event, Ticket
from triage.store.queries import sla_breached, ticket_view

log = logging.getLogger(__name__)

#: Where a session's ``info`` keeps the ids its commit will publish.
PENDING_KEY = "triage.outbox.pending"
#: A delivery's message may arrive this much before it is due (the clocks of two hosts differ).
EARLY_SECONDS = 1.0
#: The shortest wait for a write-back behind an older one, and the longest while a worker holds the older
#: one (or its time is past and the sweep is bringing it back).
MIN_WAIT_SECONDS = 1.0
ORDER_WAIT_SECONDS = 5.0
#: The longest error text kept on a delivery.
MAX_ERROR_CHARS = 500
DELIVERY_ID_PREFIX = "dlv_"


def new_delivery_id() -> str:
    """``dlv_`` and 32 hex digits: unique everywhere, so receivers can de-duplicate on it (``webhook-id``)."""
    return DELIVERY_ID_PREFIX + uuid.uuid4().hex


class LeaseLostError(ConflictError):
    """Another worker took the delivery over (this one's lease ran out): stop without writing anything."""


@dataclass(frozen=True)
class DeliveryLease:
    """A worker's hold on one delivery for one attempt; ``payload`` is what to send (a write-back's
    with ``previous_*`` filled in), ``resumed`` says an earlier attempt may have done part of it."""

    id: str
    token: str
    kind: DeliveryKind
    target: str
    target_name: str
    topic: str
    payload: dict[str, Any]
    steps_done: tuple[str, ...]
    attempt: int
    resumed: bool


@dataclass(frozen=True)
class Wait:
    """Not now: try again in ``seconds`` (no attempt is spent)."""

    seconds: float
    reason: str


@dataclass(frozen=True)
class Skip:
    """Nothing to do (finished, held by another worker, superseded, gone from the database)."""

    reason: str


Leased = DeliveryLease | Wait | Skip


class Outbox:
    """The ``deliveries`` table's one writer, for one application's settings and sessions."""

    def __init__(self, settings: Settings, sessions: sessionmaker[Session], publish: Callable[[str], None], *,
                 lease_seconds: float) -> None:
        self.settings, self.sessions, self.publish = settings, sessions, publish
        self.lease_seconds = lease_seconds
        self.policy = RetryPolicy.from_settings(settings)
        self.enabled_platforms = settings.writeback.enabled_platforms()
        self.alerts_on = settings.alerts.webhook_url is not None

    # ---- wiring -------------------------------------------------------------------------------------

    def install(self) -> None:
        """Publish what each commit of a session of ``sessions`` recorded (and forget it on a rollback)."""
        event.listen(self.sessions, "after_commit", self._after_commit)
        event.listen(self.sessions, "after_rollback", self._after_rollback)

    def _after_commit(self, session: Session) -> None:
        for delivery_id in session.info.pop(PENDING_KEY, []):
            try:
                self.publish(delivery_id)
            except Exception as exc:  # the decision is committed: never fail it now; the sweep publishes it
                log.warning("delivery %s is stored but not enqueued (%s); the sweep job will publish it",
                            delivery_id, type(exc).__name__)

    @staticmethod
    def _after_rollback(session: Session) -> None:
        session.info.pop(PENDING_KEY, None)

    def _add(self, session: Session, now: datetime, *, ticket_id: int, kind: DeliveryKind, target: str,
             target_name: str, topic: str, payload: dict[str, Any], event_id: int | None = None,
             once_key: str | None = None, delivery_id: str | None = None) -> Delivery:
        row = Delivery(id=delivery_id or new_delivery_id(), ticket_id=ticket_id, event_id=event_id, kind=kind,
                       target=target, target_name=target_name, topic=topic, once_key=once_key, payload=payload,
                       status=DeliveryStatus.PENDING, attempts=0, steps_done=[], created_at=now, updated_at=now)
        session.add(row)
        self._publish_after_commit(session, [row.id])
        return row

    @staticmethod
    def _publish_after_commit(session: Session, ids: Iterable[str]) -> None:
        session.info.setdefault(PENDING_KEY, []).extend(ids)

    # ---- recording (in the decision's transaction) --------------------------------------------------

    def record_decision(self, session: Session, ticket: Ticket, audit: Event, before: dict[str, Any],
                        now: datetime) -> list[Delivery]:
        """Add the deliveries the audited decision ``audit`` needs (see :mod:`triage.outbox.rules`)."""
        kind = EventKind(audit.kind)
        after = audit.after or {}
        ref = self._writeback_ref(session, ticket, kind)
        event_type = rules.event_type(kind)
        endpoints = self.settings.events.endpoints_for(event_type) if event_type else []
        alert = self.alerts_on and rules.raises_p1_alert(kind, before, after, self.settings.alerts.priorities)
        if ref is None and not endpoints and not alert:
            return []
        session.flush()  # the audit event's id orders write-backs; the view counts the attempts just added
        added = []
        if ref is not None:
            delivery_id = new_delivery_id()
            write = Write(delivery_id, ref, ticket.id, route=str(ticket.route), priority=str(ticket.priority),
                          fields=dict(ticket.fields or {}), resolved=kind == EventKind.RESOLVED,
                          suggestion=rules.suggestion_only(kind, ticket.autonomy))
            added.append(self._add(session, now, ticket_id=ticket.id, kind=DeliveryKind.WRITEBACK, target=ref.platform,
                                   target_name=ref.platform, topic=kind, payload=write.to_json(), event_id=audit.id,
                                   delivery_id=delivery_id))
        view = ticket_view(session, ticket).to_json() if endpoints or alert else {}
        if event_type is not None and endpoints:
            added += self._events(session, now, ticket.id, event_type, view, audit.id)
        if alert:
            text = rules.marked(p1_text(view, ticket_link(self.settings.writeback.triage_url, ticket.id)),
                                ticket.autonomy)
            added.append(self._alert(session, now, ticket.id, AlertTopic.P1, text, event_id=audit.id))
        return added

    def record_run_decision(self, session: Session, ticket_id: int, event_id: int, kind: EventKind, source: str,
                            before: dict[str, Any], after: dict[str, Any], now: datetime) -> list[Delivery]:
        """:meth:`record_decision` for a decision written with Core statements (a worker's run): the ticket and its
        event are loaded only when the outbox may need a delivery for it (:meth:`may_need`), so the hot path builds
        no ORM objects otherwise."""
        if not self.may_need(kind, source, before, after):
            return []
        return self.record_decision(session, session.get_one(Ticket, ticket_id), session.get_one(Event, event_id),
                                    before, now)

    def may_need(self, kind: EventKind, source: str, before: dict[str, Any], after: dict[str, Any]) -> bool:
        """Whether a decision from a conversation of ``source`` could need a delivery (a cheap test before
        :meth:`record_decision`, which decides)."""
        event_type = rules.event_type(kind)
        return ((rules.writes_back(kind) and source in self.enabled_platforms)
                or bool(event_type and self.settings.events.endpoints_for(event_type))
                or (self.alerts_on and rules.raises_p1_alert(kind, before, after, self.settings.alerts.priorities)))

    def _writeback_ref(self, session: Session, ticket: Ticket, kind: EventKind) -> PlatformRef | None:
        if not rules.writes_back(kind, ticket.autonomy) or not ticket.route or not ticket.priority:
            return None
        conversation = ticket.conversation
        ref = rules.platform_ref(conversation.source, conversation.platform_ticket_id,
                                 conversation.platform_account_id, self.enabled_platforms)
        if ref is None:
            return None
        latest = session.scalars(
            select(Delivery).where(Delivery.ticket_id == ticket.id, Delivery.kind == DeliveryKind.WRITEBACK,
                                   Delivery.target == ref.platform,
                                   Delivery.status.not_in(NOT_APPLIED))
            .order_by(Delivery.event_id.desc()).limit(1)).first()
        if latest is not None and _same_decision(latest.payload, ticket.route, ticket.priority,
                                                 kind == EventKind.RESOLVED,
                                                 rules.suggestion_only(kind, ticket.autonomy)):
            return None  # e.g. a reprocess that changed nothing: the platform already has (or gets) it
        return ref

    def _events(self, session: Session, now: datetime, ticket_id: int, event_type: str, view: dict[str, Any],
                event_id: int | None, **data: Any) -> list[Delivery]:
        body = event_body(event_type, view, now, **data).decode()
        return [self._add(session, now, ticket_id=ticket_id, kind=DeliveryKind.EVENT,
                          target=rules.endpoint_key(endpoint.url), target_name=rules.endpoint_name(endpoint.url),
                          topic=event_type, payload={"body": body}, event_id=event_id)
                for endpoint in self.settings.events.endpoints_for(event_type)]

    def _alert(self, session: Session, now: datetime, ticket_id: int, topic: AlertTopic, text: str, *,
               event_id: int | None = None, once_key: str | None = None) -> Delivery:
        return self._add(session, now, ticket_id=ticket_id, kind=DeliveryKind.ALERT, target=ALERTS_TARGET,
                         target_name=ALERTS_TARGET, topic=topic, payload={"text": text}, event_id=event_id,
                         once_key=once_key)

    # ---- SLA breaches (the beat job) ----------------------------------------------------------------

    def raise_sla_alerts(self, now: datetime) -> list[int]:
        """One alert per breach (:func:`~triage.store.queries.sla_breached`, the one definition): tickets
        past their SLA due time with no breach alert raised since that time. Returns their ids."""
        if not self.alerts_on:
            return []
        alerted = select(Delivery.id).where(Delivery.ticket_id == Ticket.id, Delivery.kind == DeliveryKind.ALERT,
                                            Delivery.topic == AlertTopic.SLA_BREACH,
                                            Delivery.created_at >= Ticket.sla_due_at)
        link_base = self.settings.writeback.triage_url
        with self.sessions.begin() as session:
            tickets = session.scalars(select(Ticket).where(sla_breached(now), ~alerted.exists())
                                      .order_by(Ticket.sla_due_at, Ticket.id)).all()
            for ticket in tickets:
                text = sla_breach_text(ticket_view(session, ticket).to_json(), ticket_link(link_base, ticket.id))
                due = ticket.sla_due_at.isoformat() if ticket.sla_due_at else ""
                self._alert(session, now, ticket.id, AlertTopic.SLA_BREACH, text, once_key=f"sla_breach:{due}")
            return [ticket.id for ticket in tickets]

    # ---- leasing -----------------------------------------------------------------------------------

    def lease(self, delivery_id: str, now: datetime) -> Leased:
        """Hold ``delivery_id`` for one attempt (see the module); a :class:`Wait` or :class:`Skip` otherwise."""
        with self.sessions.begin() as session:
            head = session.execute(select(Delivery.kind, Delivery.ticket_id, Delivery.target)
                                   .where(Delivery.id == delivery_id)).first()
            if head is None:
                return Skip("no such delivery (purged, or another database)")
            if head.kind == DeliveryKind.WRITEBACK:  # lock the ticket's write-backs to this platform, in order
                siblings = list(session.scalars(
                    select(Delivery).where(Delivery.ticket_id == head.ticket_id, Delivery.kind == head.kind,
                                           Delivery.target == head.target)
                    .order_by(Delivery.event_id, Delivery.created_at, Delivery.id).with_for_update()))
                row = next((sibling for sibling in siblings if sibling.id == delivery_id), None)
            else:
                siblings = []
                row = session.scalars(select(Delivery).where(Delivery.id == delivery_id).with_for_update()).first()
            if row is None:
                return Skip("no such delivery (purged meanwhile)")
            not_now = self._not_now(row, now)
            if not_now is not None:
                return not_now
            previous: dict[str, Any] | None = None
            if siblings:
                ordered = self._in_order(siblings, row, now)
                if isinstance(ordered, Wait | Skip):
                    return ordered
                previous = ordered
            if self.policy.out_of_attempts(row.attempts - row.transient_attempts):
                self._fail(session, row, now, f"gave up after {row.attempts} attempts"
                           + (f"; the last: {row.last_error}" if row.last_error else ""))
                return Skip(f"failed: out of attempts ({row.attempts})")
            resumed = row.attempts > 0 or row.last_error is not None or bool(row.steps_done)
            row.attempts += 1
            _move(row, DeliveryStatus.DELIVERING, now)
            row.lease_token, row.lease_until = str(uuid.uuid4()), now + timedelta(seconds=self.lease_seconds)
            payload = dict(row.payload)
            if row.kind == DeliveryKind.WRITEBACK and previous is not None:
                payload |= {"previous_route": previous.get("route"), "previous_priority": previous.get("priority"),
                            "previous_resolved": bool(previous.get("resolved"))}
            return DeliveryLease(row.id, row.lease_token, DeliveryKind(row.kind), row.target, row.target_name,
                                 row.topic, payload, tuple(row.steps_done or ()), row.attempts, resumed)

    @staticmethod
    def _held(row: Delivery, now: datetime) -> bool:
        return row.status == DeliveryStatus.DELIVERING and row.lease_until is not None and row.lease_until > now

    def _not_now(self, row: Delivery, now: datetime) -> Wait | Skip | None:
        if row.status in FINAL:
            return Skip(f"already {row.status}")
        if self._held(row, now):
            return Skip("held by another worker")
        if row.next_attempt_at is not None and row.next_attempt_at > now + timedelta(seconds=EARLY_SECONDS):
            return Wait((row.next_attempt_at - now).total_seconds(), "not due yet")
        return None

    def _until_done(self, old: Delivery, now: datetime) -> float:
        """How long to wait for an unfinished older write-back: its next attempt's time when it waits for
        one, else a short while (a worker holds it and is about done, or the sweep is bringing it back)."""
        if self._held(old, now) and old.lease_until is not None:
            return min((old.lease_until - now).total_seconds(), ORDER_WAIT_SECONDS)
        due = (old.next_attempt_at - now).total_seconds() if old.next_attempt_at is not None else 0.0
        return due if due > 0 else ORDER_WAIT_SECONDS

    def _in_order(self, siblings: Sequence[Delivery], row: Delivery,
                  now: datetime) -> dict[str, Any] | Wait | Skip | None:
        """The write-back ordering rule: Skip (superseded), Wait (an older one is unfinished), or the
        payload of the last older write-back that wrote anything (None: no such write-back)."""
        position = siblings.index(row)
        older, newer = siblings[:position], siblings[position + 1:]
        if newer and (not row.steps_done or any(n.steps_done or n.status == DeliveryStatus.DELIVERED for n in newer)):
            self._end(row, DeliveryStatus.SUPERSEDED, now)
            return Skip("superseded by a newer write-back of the ticket")
        for old in older:
            if old.status not in FINAL and not old.steps_done and not self._held(old, now):
                self._end(old, DeliveryStatus.SUPERSEDED, now)
        blocking = [old for old in older if old.status not in FINAL]
        if blocking:
            seconds = max(MIN_WAIT_SECONDS, *(self._until_done(old, now) for old in blocking))
            return Wait(min(seconds, self.policy.backoff.retry_after_max_seconds),
                        f"an older write-back of the ticket is unfinished ({blocking[-1].id})")
        applied = [old for old in older if old.steps_done and not old.payload.get("suggestion")]  # a note only
        return dict(applied[-1].payload) if applied else None

    # ---- one attempt's progress and end (conditional on the lease) ----------------------------------

    def _held_by(self, session: Session, lease: DeliveryLease) -> Delivery | None:
        return session.scalars(select(Delivery).where(Delivery.id == lease.id, Delivery.lease_token == lease.token)
                               .with_for_update()).one_or_none()

    def step_done(self, lease: DeliveryLease, step: str, now: datetime, remarks: Sequence[str] = ()) -> None:
        """Record that ``step`` happened, with its ``remarks`` for the note (committed before the next step
        runs); :class:`LeaseLostError` when another worker holds the delivery now."""
        with self.sessions.begin() as session:
            row = self._held_by(session, lease)
            if row is None:
                raise LeaseLostError(f"delivery {lease.id}: the lease was lost before step {step!r} was recorded")
            row.steps_done, row.updated_at = [*(row.steps_done or []), step], now
            if remarks:
                row.payload = {**row.payload, "remarks": [*(row.payload.get("remarks") or []), *remarks]}

    def settle(self, lease: DeliveryLease, now: datetime, error: DeliveryError | None = None) -> Wait | str:
        """End the attempt: delivered (no ``error``), gone, skipped, failed, or pending again, as the error's
        class and the :class:`~triage.outbox.retry.RetryPolicy` say. Returns the status, or the :class:`Wait`
        before the next attempt."""
        with self.sessions.begin() as session:
            row = self._held_by(session, lease)
            if row is None:
                return "lease lost"
            if error is not None:
                row.last_error, row.last_status = _message(error), error.status
            if error is None:
                self._end(row, DeliveryStatus.DELIVERED, now)
            elif isinstance(error, GoneDeliveryError):
                self._end(row, DeliveryStatus.GONE, now)
            elif isinstance(error, SkippedDeliveryError):
                self._end(row, DeliveryStatus.SKIPPED, now)
            elif isinstance(error, RetryableDeliveryError):
                if isinstance(error, TransientDeliveryError):
                    row.transient_attempts += 1
                after = self.policy.next_try(row.retried_at or row.created_at, now, attempts=row.attempts,
                                             unclassified=row.attempts - row.transient_attempts, wait=error.wait)
                if isinstance(after, GiveUp):
                    self._fail(session, row, now, f"{after.reason}; the last: {row.last_error}")
                    return row.status
                _move(row, DeliveryStatus.PENDING, now)
                row.next_attempt_at = now + timedelta(seconds=after.seconds)
                row.lease_token = row.lease_until = None
                return Wait(after.seconds, row.last_error or "retry")
            else:
                self._fail(session, row, now, row.last_error or "")
            return row.status

    @staticmethod
    def _end(row: Delivery, status: DeliveryStatus, now: datetime) -> None:
        _move(row, status, now)
        row.finished_at = now
        row.lease_token = row.lease_until = row.next_attempt_at = None

    def _fail(self, session: Session, row: Delivery, now: datetime, message: str) -> None:
        """Fail ``row`` with ``message`` and announce it (``delivery.failed``; never for that event itself)."""
        row.last_error = message[:MAX_ERROR_CHARS]
        self._end(row, DeliveryStatus.FAILED, now)
        if row.topic == rules.DELIVERY_FAILED:
            return
        ticket = session.get_one(Ticket, row.ticket_id)
        view = ticket_view(session, ticket).to_json()
        self._events(session, now, row.ticket_id, rules.DELIVERY_FAILED, view, None,
                     delivery=delivery_view(row).to_json())

    # ---- recovery and a person's retry --------------------------------------------------------------

    def sweep(self, now: datetime, older_than: timedelta) -> list[str]:
        """Deliveries whose message was lost: ``pending`` past due, or ``delivering`` with a dead lease, for
        longer than ``older_than``; each is published again (after the commit), once per threshold."""
        cutoff = now - older_than
        waiting = and_(Delivery.status == DeliveryStatus.PENDING,
                       or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at < cutoff))
        abandoned = and_(Delivery.status == DeliveryStatus.DELIVERING, Delivery.lease_until < now)
        with self.sessions.begin() as session:
            rows = session.scalars(select(Delivery).where(Delivery.updated_at < cutoff, or_(waiting, abandoned))
                                   .order_by(Delivery.created_at).with_for_update(skip_locked=True)).all()
            for row in rows:
                row.updated_at = now
            ids = [row.id for row in rows]
            self._publish_after_commit(session, ids)
        return ids

    def retry(self, now: datetime, ids: Sequence[str] = (), *, all_failed: bool = False) -> list[str]:
        """Put ``failed`` (or ``gone``, or ``skipped``) deliveries back to ``pending`` with a fresh budget
        (attempts, and ``writeback.give_up_after_hours`` from ``now``) and publish them; ``all_failed`` takes
        every failed one (never a gone or skipped one). Steps already done are not done again."""
        with self.sessions.begin() as session:
            query = select(Delivery).with_for_update()
            query = (query.where(Delivery.status == DeliveryStatus.FAILED) if all_failed
                     else query.where(Delivery.id.in_(ids)))
            rows = session.scalars(query.order_by(Delivery.created_at)).all()
            missing = sorted(set(ids) - {row.id for row in rows})
            if missing:
                raise NotFoundError(f"no delivery {', '.join(missing)}")
            refused = [f"{row.id} is {row.status}" for row in rows if row.status not in RETRYABLE_BY_HAND]
            if refused:
                raise ConflictError(f"only failed, gone or skipped deliveries can be retried: {'; '.join(refused)}")
            for row in rows:
                _move(row, DeliveryStatus.PENDING, now)
                row.attempts, row.transient_attempts = 0, 0
                row.retried_at = now
                row.next_attempt_at = row.finished_at = None
            retried = [row.id for row in rows]
            self._publish_after_commit(session, retried)
        return retried


def _move(row: Delivery, status: DeliveryStatus, now: datetime) -> None:
    """Set ``row``'s status to ``status``, as :data:`~triage.states.deliveries.TRANSITIONS` allows
    (:class:`~triage.states.deliveries.DeliveryTransitionError` otherwise)."""
    row.status, row.updated_at = transition(row.status, status), now


def _same_decision(payload: dict[str, Any], route: str | None, priority: str | None, resolved: bool,
                   suggestion: bool) -> bool:
    return ((payload.get("route"), payload.get("priority"), bool(payload.get("resolved")),
             bool(payload.get("suggestion"))) == (route, priority, resolved, suggestion))


def _message(error: DeliveryError) -> str:
    """The error as stored and shown: already scrubbed of our secrets by the peer, cut short."""
    return str(error)[:MAX_ERROR_CHARS]

