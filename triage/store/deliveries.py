"""Read queries over the outbox's deliveries, shared by ``triage deliveries``, ``GET /deliveries`` and the
ticket's detail. A delivery as people see it names its target without a secret (a platform, an
events endpoint's host, the alerts webhook) and never shows its payload::

    page = list_deliveries(sessions, status="failed", limit=50)
    more = list_deliveries(sessions, status="failed", limit=50, cursor=page.next_cursor)
"""

from __future__ import annotations

import base64
import json
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session, sessionmaker

from triage.errors import InputError
from triage.states.deliveries import DeliveryStatus
from triage.store.models import Delivery


class DeliveryCursorError(InputError):
    """The cursor is not one this listing handed out."""


@dataclass(frozen=True)
class DeliveryView:
    id: str
    ticket_id: int
    kind: str
    target: str
    topic: str
    status: str
    attempts: int
    steps_done: list[str]
    last_error: str | None
    last_status: int | None
    next_attempt_at: datetime | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("next_attempt_at", "created_at", "updated_at", "finished_at"):
            data[key] = data[key].isoformat() if data[key] else None
        return data


def delivery_view(row: Delivery) -> DeliveryView:
    return DeliveryView(id=row.id, ticket_id=row.ticket_id, kind=row.kind, target=row.target_name, topic=row.topic,
                        status=row.status, attempts=row.attempts, steps_done=list(row.steps_done or []),
                        last_error=row.last_error, last_status=row.last_status, next_attempt_at=row.next_attempt_at,
                        created_at=row.created_at, updated_at=row.updated_at, finished_at=row.finished_at)


@dataclass(frozen=True)
class DeliveryPage:
    items: list[DeliveryView]
    next_cursor: str | None


def _encode(view: DeliveryView) -> str:
    position = json.dumps({"at": view.created_at.isoformat(), "id": view.id})
    return base64.urlsafe_b64encode(position.encode()).decode().rstrip("=")


def _decode(cursor: str) -> tuple[datetime, str]:
    try:
        position = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return datetime.fromisoformat(position["at"]), str(position["id"])
    except (ValueError, TypeError, KeyError) as exc:
        raise DeliveryCursorError("cursor is not valid; use the next_cursor of a previous page") from exc


def list_deliveries(sessions: sessionmaker[Session], *, status: DeliveryStatus | None = None,
                    ticket_id: int | None = None, limit: int | None = None,
                    cursor: str | None = None) -> DeliveryPage:
    """Deliveries, newest first, optionally of one ``status`` or one ticket; pages with ``next_cursor``."""
    query = select(Delivery).order_by(Delivery.created_at.desc(), Delivery.id.desc())
    if status is not None:
        query = query.where(Delivery.status == status)
    if ticket_id is not None:
        query = query.where(Delivery.ticket_id == ticket_id)
    if cursor is not None:
        at, last_id = _decode(cursor)
        query = query.where(or_(Delivery.created_at < at, and_(Delivery.created_at == at, Delivery.id < last_id)))
    if limit is not None:
        query = query.limit(limit + 1)
    with sessions() as session:
        views = [delivery_view(row) for row in session.scalars(query)]
    if limit is None or len(views) <= limit:
        return DeliveryPage(views, None)
    return DeliveryPage(views[:limit], _encode(views[limit - 1]))


def deliveries_of(session: Session, ticket_id: int) -> list[dict[str, Any]]:
    """A ticket's deliveries, oldest first, as JSON-ready data (for the ticket's detail)."""
    rows = session.scalars(select(Delivery).where(Delivery.ticket_id == ticket_id)
                           .order_by(Delivery.created_at, Delivery.id))
    return [delivery_view(row).to_json() for row in rows]
