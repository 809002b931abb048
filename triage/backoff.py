"""How long to wait before retrying an API call: exponential backoff with jitter, honouring Retry-After.

>>> from triage.settings import RetrySettings
>>> policy = RetrySettings(backoff_base_seconds=2, backoff_max_seconds=60, retry_after_max_seconds=120)
>>> 1.0 <= retry_countdown(policy, retries=0) <= 2.0
True
>>> retry_countdown(policy, retries=10) <= 60
True
>>> retry_countdown(policy, retries=0, retry_after=30) >= 30
True
>>> retry_countdown(policy, retries=0, retry_after=10_000)
120.0
"""

from __future__ import annotations

import random

from triage.settings import RetrySettings


def retry_countdown(policy: RetrySettings, retries: int, retry_after: float | None = None,
                    rng: random.Random | None = None) -> float:
    """Seconds to wait before retry number ``retries + 1``.

    "Equal jitter": half of ``min(max, base * 2**retries)`` plus a random share of the other
    half, so retries from many workers spread out but never come back at once. A server's
    ``Retry-After`` (clamped to ``retry_after_max_seconds``) is a floor.
    """
    rng = rng or random.Random()
    ceiling: float = min(policy.backoff_max_seconds, policy.backoff_base_seconds * 2.0 ** min(retries, 32))
    wait = ceiling / 2 + rng.uniform(0, ceiling / 2)
    if retry_after is not None:
        server_wait = min(max(retry_after, 0.0), policy.retry_after_max_seconds)
        wait = max(wait, server_wait)
    return wait
