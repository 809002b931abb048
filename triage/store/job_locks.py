"""Locks for scheduled jobs: a run holds its job's row until ``locked_until``.

Two beat processes (a mistake, or a failover overlap) fire the same schedule; the second run
finds the lock held and does nothing, so no job runs twice::

    if try_lock(sessions, "sweep-stuck", holder="beat-1", hold_seconds=50, now=clock.now()):
        ...  # run the job

A run forced by hand (``triage sweep --force``) takes the job's second row, :func:`forced_name`,
and gives it back when it ends (:func:`release`): it runs whoever holds the scheduled lock, and
two forced runs at once still find each other.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import or_, update
from sqlalchemy.orm import Session, sessionmaker

from triage.store.db import changed_rows, insert_if_absent
from triage.store.models import JobLock, table_of

_TABLE = table_of(JobLock)


def _ensure_row(session: Session, name: str) -> None:
    session.execute(insert_if_absent(session.get_bind().dialect.name, _TABLE, "name", name=name))


def try_lock(sessions: sessionmaker[Session], name: str, holder: str, hold_seconds: float, now: datetime) -> bool:
    """Take job ``name``'s lock for ``hold_seconds`` unless a live lock is held; ``True`` if taken."""
    with sessions.begin() as session:
        _ensure_row(session, name)
        taken = changed_rows(session.execute(
            update(JobLock)
            .where(JobLock.name == name, or_(JobLock.locked_until.is_(None), JobLock.locked_until <= now))
            .values(holder=holder, locked_until=now + timedelta(seconds=hold_seconds))
        ))
    return bool(taken)


#: The suffix of the lock row a forced run takes (``sweep-stuck/forced``).
FORCED_SUFFIX = "/forced"


def forced_name(name: str) -> str:
    """The lock row of job ``name``'s forced runs.

    >>> forced_name("sweep-stuck")
    'sweep-stuck/forced'
    """
    return name + FORCED_SUFFIX


def release(sessions: sessionmaker[Session], name: str, holder: str) -> None:
    """Give back job ``name``'s lock if ``holder`` still holds it (a run that ended early frees its slot)."""
    with sessions.begin() as session:
        session.execute(update(JobLock).where(JobLock.name == name, JobLock.holder == holder)
                        .values(holder=None, locked_until=None))
