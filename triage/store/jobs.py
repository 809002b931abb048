"""Locks for scheduled jobs: a run holds its job's row until ``locked_until``.

Two beat processes (a mistake, or a failover overlap) fire the same schedule; the second run
finds the lock held and does nothing, so no job runs twice::

    if try_lock(sessions, "sweep-stuck", holder="beat-1", hold_seconds=50):
        ...  # run the job
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import or_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker

from triage.store.models import JobLock, utcnow


def _ensure_row(session: Session, name: str) -> None:
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    session.execute(insert(JobLock).values(name=name).on_conflict_do_nothing(index_elements=["name"]))


def try_lock(sessions: sessionmaker[Session], name: str, holder: str, hold_seconds: float) -> bool:
    """Take job ``name``'s lock for ``hold_seconds`` unless a live lock is held; ``True`` if taken."""
    now = utcnow()
    with sessions.begin() as session:
        _ensure_row(session, name)
        taken = session.execute(
            update(JobLock)
            .where(JobLock.name == name, or_(JobLock.locked_until.is_(None), JobLock.locked_until <= now))
            .values(holder=holder, locked_until=now + timedelta(seconds=hold_seconds))
        ).rowcount
    return bool(taken)
