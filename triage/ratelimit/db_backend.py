"""The limiter on the database, for the embedded default (one host, SQLite) or PostgreSQL.

One row per model (``rate_limit_state``) holds the model's sliding-window log as JSON (at most
``rpm`` grants, pruned on every call) and its "blocked until" time; the rules are those of
:mod:`triage.ratelimit.window`, so the guarantee is the Redis one: any closed interval of
``window_seconds`` holds at most ``rpm`` grants and ``tpm`` tokens.

Serialising: each call is one transaction that first writes (``INSERT ... ON CONFLICT DO
NOTHING`` creates the row the first time) and then reads the row ``FOR UPDATE``. On SQLite the
first write takes the database's write lock (already taken by ``BEGIN IMMEDIATE`` on engines
from :func:`triage.store.db.make_engine`); on PostgreSQL the row lock queues callers. The clock
is read only once the lock is held: PostgreSQL's ``clock_timestamp()`` (one clock for every
host), SQLite's host clock (SQLite is single-host, so that is the one clock too).

>>> from triage.store.db import make_engine
>>> engine = make_engine("sqlite://")
>>> Base.metadata.create_all(engine, tables=[RateLimitState.__table__])
>>> limiter = DatabaseRateLimiter(engine, RateLimitSettings(rpm=1))
>>> limiter.peek("mimo-v2-flash"), limiter.acquire("mimo-v2-flash", 10)
(Headroom(left=1, wait=0.0), 0.0)
>>> 59 < limiter.peek("mimo-v2-flash").wait <= 60, 59 < limiter.acquire("mimo-v2-flash", 10) <= 60
(True, True)
"""

from __future__ import annotations

import math
import time
from typing import Any

from sqlalchemy import BigInteger, Connection, Engine, String, inspect, select, text, update
from sqlalchemy.orm import Mapped, mapped_column

from triage.errors import DatabaseNotReadyError
from triage.ratelimit import window
from triage.ratelimit.base import Headroom, check_penalty, check_request
from triage.settings import RateLimitSettings
from triage.store.db import insert_if_absent
from triage.store.models import Base, table_of

DIALECTS = ("sqlite", "postgresql")


class RateLimitState(Base):
    """One model's limiter state: the grants in the window (oldest first) and the end of a 429 block."""

    __tablename__ = "rate_limit_state"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)  # "<key_prefix>:<model>"
    blocked_until_us: Mapped[int] = mapped_column(BigInteger, default=0)  # µs since the epoch
    grants: Mapped[list[Any]]  # JSON [[granted_at_us, tokens], ...]


_TABLE = table_of(RateLimitState)


class DatabaseRateLimiter:
    """:class:`~triage.ratelimit.base.RateLimiter` shared by every process using the same database."""

    def __init__(self, engine: Engine, settings: RateLimitSettings, *, window_seconds: float = 60.0) -> None:
        if engine.dialect.name not in DIALECTS:
            raise ValueError(f"the database rate limiter supports SQLite and PostgreSQL, not {engine.dialect.name}")
        if window_seconds <= 0:
            raise ValueError(f"window_seconds must be positive, got {window_seconds!r}")
        if not inspect(engine).has_table(_TABLE.name):
            raise DatabaseNotReadyError(f"the database has no {_TABLE.name} table: run `triage db upgrade` first")
        self._engine = engine
        self._settings = settings
        self._window_us = math.ceil(window_seconds * 1_000_000)

    def key(self, model: str) -> str:
        return f"{self._settings.key_prefix}:{model}"

    def acquire(self, model: str, tokens: int) -> float:
        budget = self._settings.budget(model)
        check_request(budget, tokens)
        key = self.key(model)
        with self._engine.begin() as conn:
            blocked_until, stored = self._lock(conn, key)
            now = self._now_us(conn)
            grants = window.prune(stored, now, self._window_us)
            wait = window.wait_us(grants, now, blocked_until, budget, self._window_us, tokens)
            if not wait:
                grants.append((now, tokens))
            if len(grants) != len(stored) or not wait:
                conn.execute(update(_TABLE).where(_TABLE.c.key == key).values(grants=[list(g) for g in grants]))
        return wait / 1_000_000

    def penalize(self, model: str, seconds: float) -> None:
        micros = check_penalty(seconds)
        if not micros:
            return
        key = self.key(model)
        with self._engine.begin() as conn:
            blocked_until, _ = self._lock(conn, key)
            until = self._now_us(conn) + micros
            if until > blocked_until:
                conn.execute(update(_TABLE).where(_TABLE.c.key == key).values(blocked_until_us=until))

    def peek(self, model: str) -> Headroom:
        budget = self._settings.budget(model)
        with self._engine.connect() as conn:
            row = conn.execute(select(_TABLE.c.blocked_until_us, _TABLE.c.grants)
                               .where(_TABLE.c.key == self.key(model))).one_or_none()
            if row is None:
                return Headroom(budget.rpm)
            now = self._now_us(conn)
        grants = window.prune(row.grants, now, self._window_us)
        return Headroom.of(*window.headroom_us(grants, now, row.blocked_until_us, budget, self._window_us))

    def _lock(self, conn: Connection, key: str) -> tuple[int, list[Any]]:
        conn.execute(insert_if_absent(conn.dialect.name, _TABLE, "key", key=key, blocked_until_us=0, grants=[]))
        row = conn.execute(select(_TABLE.c.blocked_until_us, _TABLE.c.grants)
                           .where(_TABLE.c.key == key).with_for_update()).one()
        return row.blocked_until_us, row.grants

    @staticmethod
    def _now_us(conn: Connection) -> int:
        if conn.dialect.name == "postgresql":
            now_us: int = conn.execute(
                text("SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint")).scalar_one()
            return now_us
        return time.time_ns() // 1000
