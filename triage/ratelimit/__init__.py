"""Fleet-wide rate limiting of LLM calls: one small interface, a Redis and a database backend.

MiMo allows 100 requests and 10M tokens per minute per model, summed over every key of the
account, so all workers share one limiter. Before each call a worker asks for the request and
its estimated tokens (prompt + ``max_completion_tokens``); on a 429 it tells the whole fleet to
back off for the server's ``Retry-After``::

    limiter = make_rate_limiter(settings.rate_limit, settings.broker_url, engine)
    wait = limiter.acquire(model, tokens=estimate)
    if wait:
        raise task.retry(countdown=wait)      # nothing was taken from the budget
    ...                                       # call the API
    limiter.penalize(model, retry_after)      # when it answered 429

Modules: :mod:`~triage.ratelimit.base` (the protocol), :mod:`~triage.ratelimit.window` (the
sliding-window log), :mod:`~triage.ratelimit.redis_backend`, :mod:`~triage.ratelimit.db_backend`,
:mod:`~triage.ratelimit.factory`; the settings are :class:`triage.settings.RateLimitSettings`.
"""

from triage.ratelimit.base import Budget, RateLimiter, wait_and_acquire
from triage.ratelimit.db_backend import DatabaseRateLimiter, RateLimitState
from triage.ratelimit.factory import is_redis_url, make_rate_limiter
from triage.ratelimit.redis_backend import RedisRateLimiter

__all__ = [
    "Budget",
    "DatabaseRateLimiter",
    "RateLimitState",
    "RateLimiter",
    "RedisRateLimiter",
    "is_redis_url",
    "make_rate_limiter",
    "wait_and_acquire",
]
