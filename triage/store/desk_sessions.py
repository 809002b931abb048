"""The desk's sessions as rows (:class:`~triage.store.models.DeskSession`): opened at sign-in, read on every
desk request (one primary-key lookup), deleted at sign-out, and purged by the retention job once expired."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session, sessionmaker

from triage.store.db import changed_rows, retry_disconnect
from triage.store.models import DeskSession, table_of

SESSIONS = table_of(DeskSession)


@dataclass(frozen=True)
class StoredSession:
    actor: str
    token_fingerprint: str


@retry_disconnect
def open_session(sessions: sessionmaker[Session], key: str, actor: str, token_fingerprint: str, now: datetime,
                 expires_at: datetime) -> None:
    """Record a new session under ``key`` (the hash of its id)."""
    with sessions.begin() as session:
        session.execute(insert(SESSIONS).values(id=key, actor=actor, token_fingerprint=token_fingerprint,
                                                created_at=now, expires_at=expires_at))


@retry_disconnect
def live_session(sessions: sessionmaker[Session], key: str, now: datetime) -> StoredSession | None:
    """The session under ``key`` while it has not ended (signed out, or past its expiry), else None."""
    with sessions() as session:
        row = session.execute(select(SESSIONS.c.actor, SESSIONS.c.token_fingerprint)
                              .where(SESSIONS.c.id == key, SESSIONS.c.expires_at > now)).first()
    return StoredSession(row.actor, row.token_fingerprint) if row else None


@retry_disconnect
def end_session(sessions: sessionmaker[Session], key: str) -> None:
    """Sign-out: the session under ``key`` ends now (a copy of its cookie is no session from here on)."""
    with sessions.begin() as session:
        session.execute(delete(SESSIONS).where(SESSIONS.c.id == key))


@retry_disconnect
def purge_ended(sessions: sessionmaker[Session], now: datetime) -> int:
    """Delete every session past its expiry; how many."""
    with sessions.begin() as session:
        return changed_rows(session.execute(delete(SESSIONS).where(SESSIONS.c.expires_at <= now)))
