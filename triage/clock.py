"""The application's clock: every lease, SLA, countdown and job cutoff reads ``now()`` from it.

Tests pass their own clock to :meth:`triage.app.App.build`, so time-dependent behaviour is
tested by moving the clock, never by sleeping.

>>> SystemClock().now().tzinfo
datetime.timezone.utc
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class SystemClock:
    """The machine's clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)
