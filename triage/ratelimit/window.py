"""The sliding-window log both backends apply (the Redis Lua script mirrors these lines).

A grant is ``(granted_at_us, tokens)``. A grant counts while ``now - granted_at <= window``,
so any closed interval of one window's length holds at most ``rpm`` grants and ``tpm`` tokens.
Times are whole microseconds, so the arithmetic is exact.

>>> budget = Budget(rpm=2, tpm=100)
>>> grants = [(0, 50), (10, 50)]
>>> wait_us(grants, now_us=20, blocked_until_us=0, budget=budget, window_us=60, tokens=1)
41
>>> wait_us(prune(grants, now_us=61, window_us=60), now_us=61, blocked_until_us=0, budget=budget,
...         window_us=60, tokens=50)
0
>>> headroom_us(grants, now_us=20, blocked_until_us=0, budget=budget, window_us=60), headroom_us([], 20, 30, budget, 60)
((0, 41), (0, 10))
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from triage.settings import Budget

Grant = tuple[int, int]


def prune(grants: Iterable[Sequence[int]], now_us: int, window_us: int) -> list[Grant]:
    """The grants still inside the window, oldest first."""
    cutoff = now_us - window_us
    return sorted((int(at), int(tokens)) for at, tokens in grants if at >= cutoff)


def wait_us(grants: Sequence[Grant], now_us: int, blocked_until_us: int, budget: Budget, window_us: int,
            tokens: int) -> int:
    """Microseconds until one more request of ``tokens`` fits (``0``: it fits now).

    ``grants`` must be pruned and sorted (see :func:`prune`); the wait is the latest of: the
    end of a 429 block, the moment the request budget frees a slot, the moment enough tokens
    leave the window.
    """
    wait = max(0, blocked_until_us - now_us)
    if len(grants) >= budget.rpm:
        freeing = grants[len(grants) - budget.rpm][0]
        wait = max(wait, freeing + window_us - now_us + 1)
    used = sum(spent for _, spent in grants)
    if used + tokens > budget.tpm:
        freed = 0
        for at, spent in grants:
            freed += spent
            if used - freed + tokens <= budget.tpm:
                wait = max(wait, at + window_us - now_us + 1)
                break
    return wait


def headroom_us(grants: Sequence[Grant], now_us: int, blocked_until_us: int, budget: Budget,
                window_us: int) -> tuple[int, int]:
    """(requests the window grants now, microseconds until it grants one): ``(rpm - used, 0)`` when there is
    room, else ``(0, wait)``; ``grants`` pruned and sorted. Tokens are not counted: a request's size is
    not known before it is built."""
    wait = wait_us(grants, now_us, blocked_until_us, budget, window_us, 0)
    return (0, wait) if wait else (budget.rpm - len(grants), 0)
