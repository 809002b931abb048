"""What the pipeline's gauges show, read from the database in two grouped counts: tickets per status with
the oldest ``updated_at`` of each (when it last moved), and SLA breaches per route
(:func:`~triage.store.queries.sla_breached`, the one definition)::

    gauges = read_gauges(app.sessions, app.clock.now())
    gauges.by_status["queued"], gauges.waiting_seconds("queued", now), gauges.breached_by_route
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from triage.store.models import Ticket
from triage.store.queries import sla_breached


@dataclass(frozen=True)
class Gauges:
    """Tickets per status, the oldest ``updated_at`` per status, SLA breaches per route."""

    by_status: dict[str, int]
    oldest_update: dict[str, datetime]
    breached_by_route: dict[str, int]

    def waiting_seconds(self, status: str, now: datetime) -> float:
        """How long the longest-waiting ticket of ``status`` has been in it (0 when there is none)."""
        oldest = self.oldest_update.get(status)
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
    return Gauges(by_status={status: count for status, count, _ in per_status},
                  oldest_update={status: oldest for status, _, oldest in per_status if oldest is not None},
                  breached_by_route={route: count for route, count in breaches if route is not None})
