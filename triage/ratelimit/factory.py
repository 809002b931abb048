"""Pick the limiter backend: Redis when the Celery broker is Redis (``backend = "auto"``), else the database.

>>> from triage.ratelimit.db_backend import RateLimitState
>>> from triage.store.db import make_engine
>>> from triage.store.models import Base
>>> engine = make_engine("sqlite://")
>>> Base.metadata.create_all(engine, tables=[RateLimitState.__table__])
>>> type(make_rate_limiter(RateLimitSettings(), "sqla+sqlite:///var/broker.sqlite3", engine)).__name__
'DatabaseRateLimiter'
>>> type(make_rate_limiter(RateLimitSettings(), "redis://127.0.0.1:6379/0")).__name__
'RedisRateLimiter'
"""

from __future__ import annotations

from sqlalchemy import Engine

from triage.ratelimit.base import RateLimiter
from triage.ratelimit.db_backend import DatabaseRateLimiter
from triage.ratelimit.redis_backend import RedisRateLimiter
from triage.settings import RateLimitSettings

REDIS_SCHEMES = ("redis", "rediss", "unix")


def is_redis_url(url: str) -> bool:
    """Whether redis-py can connect to ``url`` (``redis://``, ``rediss://``, ``unix://``)."""
    return url.partition("://")[0].lower() in REDIS_SCHEMES


def make_rate_limiter(settings: RateLimitSettings, broker_url: str, engine: Engine | None = None, *,
                      window_seconds: float = 60.0) -> RateLimiter:
    """The limiter ``settings.backend`` asks for; ``auto`` follows ``broker_url``.

    Raises ``ValueError`` when the chosen backend lacks what it needs (a Redis broker URL, an
    engine), and :class:`~triage.store.db.DatabaseNotReadyError` when the table is missing.
    """
    backend = settings.backend
    if backend == "auto":
        backend = "redis" if is_redis_url(broker_url) else "database"
    if backend == "redis":
        if not is_redis_url(broker_url):
            scheme = broker_url.partition("://")[0]
            raise ValueError(f"rate_limit.backend=redis needs a redis:// broker URL, got a {scheme}:// one")
        return RedisRateLimiter.from_url(broker_url, settings, window_seconds=window_seconds)
    if engine is None:
        raise ValueError("rate_limit.backend=database needs the database engine")
    return DatabaseRateLimiter(engine, settings, window_seconds=window_seconds)
