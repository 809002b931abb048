"""The desk's templates (Jinja2, autoescaped: customer and model text is always shown as text) and the
small formatting filters they use.

>>> from datetime import datetime, timezone
>>> now = datetime(2026, 11, 25, 9, 0, tzinfo=timezone.utc)
>>> countdown(datetime(2026, 11, 25, 12, 20, tzinfo=timezone.utc), now), countdown(now.replace(hour=8), now)
('in 3 h 20 min', '1 h 0 min ago')
>>> show(["reset", "pair"]), show(None), show("<b>")
('["reset", "pair"]', 'none', '<b>')
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from triage.states.autonomy import Level
from triage.states.deliveries import RETRYABLE_BY_HAND, DeliveryStatus
from triage.states.tickets import Status

SECONDS_PER_MINUTE, MINUTES_PER_HOUR, HOURS_PER_DAY = 60, 60, 24


def _moment(value: datetime | str | None) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def when(value: datetime | str | None) -> str:
    """A stored time as people read it: ``2026-11-25 09:00 UTC``."""
    moment = _moment(value)
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else ""


def span(seconds: float) -> str:
    """``2 d 3 h``, ``3 h 20 min``, ``5 min``."""
    minutes = int(abs(seconds) // SECONDS_PER_MINUTE)
    hours, minutes = divmod(minutes, MINUTES_PER_HOUR)
    days, hours = divmod(hours, HOURS_PER_DAY)
    if days:
        return f"{days} d {hours} h"
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


def countdown(due: datetime | str | None, now: datetime) -> str:
    """How long until ``due`` (``in 3 h 20 min``), or since it passed (``25 min ago``)."""
    moment = _moment(due)
    if moment is None:
        return "no SLA"
    seconds = (moment - now).total_seconds()
    return f"in {span(seconds)}" if seconds >= 0 else f"{span(seconds)} ago"


def show(value: Any) -> str:
    """A field value as text: strings as they are, none for null, anything else as JSON."""
    if value is None:
        return "none"
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def environment() -> Environment:
    env = Environment(loader=PackageLoader("triage.api.desk", "templates"),
                      autoescape=select_autoescape(["html"], default=True), trim_blocks=True, lstrip_blocks=True)
    env.filters.update(when=when, countdown=countdown, show=show, span=span)
    # The templates compare statuses by name, as the code does: {% if ticket.status == Status.RESOLVED %}
    env.globals.update(Status=Status, DeliveryStatus=DeliveryStatus, Level=Level,
                       retryable_deliveries=RETRYABLE_BY_HAND)
    return env
