"""How long to wait before retrying an HTTP call: exponential backoff with jitter, and the server's Retry-After.

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

import math
import random
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

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


MILLISECONDS = 1000


def parse_retry_after(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP-date).

    Header names must be lower-case unless ``headers`` is case-insensitive (as httpx's are).

    >>> parse_retry_after({"retry-after": "7"})
    7.0
    >>> parse_retry_after({"retry-after-ms": "1500", "retry-after": "7"})
    1.5
    >>> parse_retry_after({"retry-after": "Wed, 25 Nov 2026 10:00:30 GMT"},
    ...                   now=datetime(2026, 11, 25, 10, 0, 0, tzinfo=UTC))
    30.0
    >>> parse_retry_after({"retry-after": "soon"}) is None
    True
    """
    milliseconds = _float(headers.get("retry-after-ms"))
    if milliseconds is not None:
        return max(milliseconds / MILLISECONDS, 0.0)
    value = headers.get("retry-after")
    if value is None:
        return None
    seconds = _float(value)
    if seconds is None:
        seconds = _seconds_until(value, now or datetime.now(UTC))
    return None if seconds is None else max(seconds, 0.0)


def _float(value: str | None) -> float | None:
    """``value`` as a finite number, or ``None``."""
    try:
        number = float(value) if value is not None else None
    except ValueError:
        return None
    return number if number is not None and math.isfinite(number) else None


def _seconds_until(http_date: str, now: datetime) -> float | None:
    try:
        when = parsedate_to_datetime(http_date)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (when - now).total_seconds()
