"""The retention job: purge what is older than ``privacy.retention_days`` (off by default).

Called with the settings and a clock, so a scheduler (beat) or a test decides when "now" is::

    report = purge_expired(sessions, settings, clock)     # None when retention is off
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy.orm import Session, sessionmaker

from triage.clock import Clock
from triage.settings import PrivacySettings, Settings
from triage.store.purge import Progress, PurgeReport, purge_before

#: The actor recorded in ``purges`` for the scheduled job.
RETENTION_ACTOR = "retention"


def retention_cutoff(privacy: PrivacySettings, now: datetime) -> datetime | None:
    """The time before which conversations are purged, or ``None`` when retention is off.

    >>> retention_cutoff(PrivacySettings(retention_days=30), datetime(2026, 3, 1, tzinfo=UTC)).isoformat()
    '2026-01-30T00:00:00+00:00'
    >>> retention_cutoff(PrivacySettings(), datetime(2026, 3, 1, tzinfo=UTC)) is None
    True
    """
    days = privacy.retention_days
    return None if days is None else now - timedelta(days=days)


def _parse_time(text: str) -> datetime:
    """An ISO date stands for midnight UTC; anything else must be an ISO time."""
    try:
        return datetime.combine(date.fromisoformat(text), time(), UTC)
    except ValueError:
        return datetime.fromisoformat(text)


def parse_cutoff(text: str, now: datetime) -> datetime:
    """``--before``: an ISO date (midnight UTC) or an ISO time with its zone, not after ``now``.

    >>> now = datetime(2026, 3, 1, tzinfo=UTC)
    >>> parse_cutoff("2026-01-01", now).isoformat(), parse_cutoff("2026-02-01T12:00+08:00", now).isoformat()
    ('2026-01-01T00:00:00+00:00', '2026-02-01T04:00:00+00:00')
    >>> parse_cutoff("2026-04-01", now)
    Traceback (most recent call last):
    ...
    ValueError: --before='2026-04-01' is after now (2026-03-01T00:00:00+00:00): that would purge everything finished
    """
    try:
        cutoff = _parse_time(text)
    except ValueError:
        raise ValueError(f"--before={text!r}: use an ISO date or time, e.g. 2026-01-01 or 2026-01-01T00:00Z") from None
    if cutoff.tzinfo is None:
        raise ValueError(f"--before={text!r}: give a time zone, e.g. 2026-01-01T00:00+00:00")
    cutoff = cutoff.astimezone(UTC)
    if cutoff > now:
        raise ValueError(f"--before={text!r} is after now ({now.isoformat()}): that would purge everything finished")
    return cutoff


def purge_expired(sessions: sessionmaker[Session], settings: Settings, clock: Clock, *,
                  progress: Progress | None = None) -> PurgeReport | None:
    """Purge conversations older than ``privacy.retention_days`` at ``clock.now()``; ``None`` when off."""
    cutoff = retention_cutoff(settings.privacy, clock.now())
    if cutoff is None:
        return None
    return purge_before(sessions, cutoff, actor=RETENTION_ACTOR, progress=progress, clock=clock)
