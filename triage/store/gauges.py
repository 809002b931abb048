"""What the pipeline's gauges show, read from the database in three grouped counts: tickets per status with
the oldest ``updated_at`` of each (when it last moved), SLA breaches per route
(:func:`~triage.store.queries.sla_breached`, the one definition), and outbox deliveries per status
with the oldest ``updated_at`` of each::

    gauges = read_gauges(app.sessions, app.clock.now())
    gauges.by_status["queued"], gauges.waiting_seconds("queued", now), gauges.breached_by_route
    gauges.deliveries_by_status["failed"], gauges.delivery_waiting_seconds("pending", now)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from triage.store.models import Delivery, Ticket
from triage.store.queries import sla_breached


@dataclass(frozen=True)
class Gauges:
    """Tickets per status, the oldest ``updated_at`` per status, SLA breaches per route; deliveries likewise."""

    by_status: dict[str, int]
    oldest_update: dict[str, datetime]
    breached_by_route: dict[str, int]
    deliveries_by_status: dict[str, int]
    oldest_delivery_update: dict[str, datetime]

    def waiting_seconds(self, status: str, now: datetime) -> float:
        """How long the longest-waiting ticket of ``status`` has been in it (0 when there is none)."""
        return _age(self.oldest_update.get(status), now)

    def delivery_waiting_seconds(self, status: str, now: datetime) -> float:
        """How long the longest-waiting delivery of ``status`` has been in it (0 when there is none)."""
        return _age(self.oldest_delivery_update.get(status), now)


def _age(oldest: datetime | None, now: datetime) -> float:
    return max((now - oldest).total_seconds(), 0.0) if oldest is not None else 0.0


def read_gauges(sessions: sessionmaker[Session], now: datetime) -> Gauges:
    """The gauges' values at ``now``."""
    with sessions() as session:
        per_status = session.execute(
            select(Ticket.status, func.count(Ticket.id), func.min(Ticket.updated_at)).group_by(Ticket.status)
        ).all()
        breaches = session.execute(
            select(Ticket.route, func.count(Ticket.id)).where(sla_breached(now)).group_by(Ticket.route)
        ).all()
        deliveries = session.execute(
            select(Delivery.status, func.count(Delivery.id), func.min(Delivery.updated_at)).group_by(Delivery.status)
        ).all()
    return Gauges(by_status={status: count for status, count, _ in per_status},
                  oldest_update={status: oldest for status, _, oldest in per_status if oldest is not None},
                  breached_by_route={route: count for route, count in breaches if route is not None},
                  deliveries_by_status={status: count for status, count, _ in deliveries},
                  oldest_delivery_update={status: oldest for status, _, oldest in deliveries if oldest is not None})
