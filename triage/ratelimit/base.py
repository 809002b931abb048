"""The one interface every rate limiter backend implements, and a helper that waits for it.

A limiter is shared by the whole fleet: ``acquire`` either takes one request and ``tokens``
from the model's budget (and returns ``0.0``) or takes nothing and says how many seconds to
wait before trying again. ``penalize`` records a 429: every caller of that model backs off.

>>> class Always:
...     def acquire(self, model: str, tokens: int) -> float:
...         return 0.0
...     def penalize(self, model: str, seconds: float) -> None:
...         pass
...     def peek(self, model: str) -> Headroom:
...         return Headroom(100)
>>> isinstance(Always(), RateLimiter)
True
>>> wait_and_acquire(Always(), "mimo-v2-flash", 1200, max_wait=5)
0.0

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

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from triage.settings import Budget


@runtime_checkable
class RateLimiter(Protocol):
    def acquire(self, model: str, tokens: int) -> float:
        """``0.0``: go now, the request and ``tokens`` are taken; ``> 0``: seconds to wait, nothing taken."""
        ...

    def penalize(self, model: str, seconds: float) -> None:
        """A 429 was seen: nobody calls ``model`` for ``seconds`` (a longer block already set stays)."""
        ...

    def peek(self, model: str) -> Headroom:
        """What ``model``'s window would grant now, taking nothing: a reading, not a reservation (another
        caller may take it first). Batching asks it whether one call per waiting ticket still fits the
        budget, and a worker whether to lease a ticket at all."""
        ...


@dataclass(frozen=True)
class Headroom:
    """A model's budget now: ``left`` requests grantable at once, or none and ``wait`` seconds until one is
    (``wait`` 0 when ``left > 0``)."""

    left: int
    wait: float = 0.0

    @classmethod
    def of(cls, left: int, wait_us: int) -> Headroom:
        return cls(left, wait_us / 1_000_000)


def check_request(budget: Budget, tokens: int) -> None:
    """Refuse token counts no budget could ever grant (instead of waiting forever).

    >>> check_request(Budget(rpm=100, tpm=1000), 1001)
    Traceback (most recent call last):
    ...
    ValueError: a request of 1001 tokens can never fit a budget of 1000 tokens per window
    """
    if not isinstance(tokens, int) or tokens < 0:
        raise ValueError(f"tokens must be a non-negative int, got {tokens!r}")
    if tokens > budget.tpm:
        raise ValueError(f"a request of {tokens} tokens can never fit a budget of {budget.tpm} tokens per window")


def check_penalty(seconds: float) -> int:
    """``seconds`` as whole microseconds (rounded up); ``0`` means "nothing to do"."""
    if not math.isfinite(seconds):
        raise ValueError(f"penalty must be a finite number of seconds, got {seconds!r}")
    return max(0, math.ceil(seconds * 1_000_000))


def wait_and_acquire(limiter: RateLimiter, model: str, tokens: int, *, max_wait: float,
                     sleep: Callable[[float], None] = time.sleep) -> float:
    """Acquire, sleeping through the waits the limiter asks for as long as they total ``max_wait`` or less.

    Returns ``0.0`` once acquired, or (without sleeping) the wait still needed when sleeping it
    would go past ``max_wait``: a Celery task can then ``retry(countdown=...)`` with it.
    """
    waited = 0.0
    while True:
        wait = limiter.acquire(model, tokens)
        if wait <= 0 or waited + wait > max_wait:
            return wait
        sleep(wait)
        waited += wait
