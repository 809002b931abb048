"""Slowing down guessing: failed authentications counted per client address, across every serve process.

Each failed sign-in and each bad bearer token takes one grant from the address's window in the fleet's
shared limiter store (:func:`triage.ratelimit.make_rate_limiter`: Redis when the broker is Redis, else
the database), so every ``triage serve`` process and host counts together. Once an address has made
``api.auth_failures_per_minute`` failures within a minute, *every* authentication attempt from it, a
right token included (else the answer would tell a guesser when a guess is right), is refused with 429
and ``Retry-After`` until the oldest of them is a minute old; other addresses are not affected.

The address is the peer's, or the one a trusted proxy forwards (``api.forwarded_allow_ips``, applied by
uvicorn's forwarded-headers handling in ``triage serve`` before the app sees the request).
"""

from __future__ import annotations

import functools
import math

from fastapi import Request
from sqlalchemy import Engine

from triage.errors import TriageError
from triage.ratelimit import RateLimiter, make_rate_limiter
from triage.settings import RateLimitSettings, Settings

#: The window failures are counted in.
WINDOW_SECONDS = 60.0
#: The limiter keys' middle part, after ``rate_limit.key_prefix``.
KEY_PART = "auth-failures"
#: The "address" of a request whose peer is unknown (an ASGI server that gives none).
UNKNOWN_ADDRESS = "unknown"


class TooManyFailuresError(TriageError):
    """The address made too many failed authentication attempts this minute: 429 for ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many failed authentication attempts from this address: try again in {retry_after} s")
        self.retry_after = retry_after


def client_address(request: Request) -> str:
    """The client's address as the app sees it (a trusted proxy's forwarded one, else the peer's)."""
    return request.client.host if request.client else UNKNOWN_ADDRESS


class AuthGuard:
    """Counts failed authentications per address in a limiter (one "model" per address, no tokens), made on first
    use from ``settings`` (``api.auth_failures_per_minute`` per address) on the fleet's limiter store."""

    def __init__(self, settings: Settings, engine: Engine | None = None) -> None:
        self._settings, self._engine = settings, engine

    @functools.cached_property
    def limiter(self) -> RateLimiter:
        settings = self._settings
        limits = RateLimitSettings(rpm=settings.api.auth_failures_per_minute, tpm=1,
                                   backend=settings.rate_limit.backend,
                                   key_prefix=f"{settings.rate_limit.key_prefix}:{KEY_PART}")
        return make_rate_limiter(limits, settings.broker_url, self._engine, window_seconds=WINDOW_SECONDS)

    def check(self, request: Request) -> None:
        """:class:`TooManyFailuresError` when the request's address has no failures left this minute."""
        room = self.limiter.peek(client_address(request))
        if room.left <= 0:
            raise TooManyFailuresError(max(1, math.ceil(room.wait)))

    def failed(self, request: Request) -> None:
        """Count one failed authentication of the request's address."""
        self.limiter.acquire(client_address(request), 0)
