"""Fleet-wide rate limiting of LLM calls: one small interface (:mod:`.base`), a Redis and a database backend.

Every worker asks the one shared limiter before each call, so the fleet stays within the API's budget.
"""

from triage.ratelimit.base import Headroom, RateLimiter, wait_and_acquire
from triage.ratelimit.db_backend import DatabaseRateLimiter, RateLimitState
from triage.ratelimit.factory import is_redis_url, make_rate_limiter
from triage.ratelimit.redis_backend import RedisRateLimiter
from triage.settings import Budget

__all__ = [
    "Budget",
    "DatabaseRateLimiter",
    "Headroom",
    "RateLimitState",
    "RateLimiter",
    "RedisRateLimiter",
    "is_redis_url",
    "make_rate_limiter",
    "wait_and_acquire",
]
