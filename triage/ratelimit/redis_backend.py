"""The fleet-wide limiter on Redis: one atomic Lua script per call, on the Redis server's clock.

Why a sliding-window log (a sorted set of grant times per model) and not GCRA or a token
bucket: MiMo counts requests per minute, and a bucket or GCRA with ``burst = rpm`` lets up to
``2 * rpm`` requests through within some 60 s window (a full burst, then the refill). The log
gives the exact guarantee: **any closed interval of ``window_seconds`` holds at most ``rpm``
grants and at most ``tpm`` reserved tokens**, for all processes and hosts together, because
every decision is taken inside one script (Redis runs scripts one at a time) on one clock
(``redis.call('TIME')``). Its cost is one sorted-set entry per grant in the window (at most
``rpm``) and O(rpm) work per call: trivial at 100 RPM. Keys (``<prefix>:{<model>}:log`` and
``...:blocked``) share a hash tag, so they live in one cluster slot, and expire a window after
their last write. Needs Redis >= 5 (scripts replicated by effects, so ``TIME`` is allowed).

>>> import redis
>>> limiter = RedisRateLimiter(redis.Redis(), RateLimitSettings(rpm=100))
>>> limiter.keys("mimo-v2-flash")
('triage:ratelimit:{mimo-v2-flash}:log', 'triage:ratelimit:{mimo-v2-flash}:blocked')

Then ``limiter.acquire("mimo-v2-flash", 1500)`` returns ``0.0`` (go) or the seconds to wait.
"""

from __future__ import annotations

import math
import uuid

import redis

from triage.ratelimit.base import Headroom, check_penalty, check_request
from triage.settings import RateLimitSettings

# KEYS: log, blocked. ARGV: rpm, tpm, window_us, tokens, nonce, ttl_ms. Returns the wait in µs (0 = granted).
# Mirrors triage.ratelimit.window; numbers reach Redis via %d, never Lua's lossy %.14g.
ACQUIRE_LUA = """
local log, blocked_key = KEYS[1], KEYS[2]
local rpm, tpm = tonumber(ARGV[1]), tonumber(ARGV[2])
local window, tokens = tonumber(ARGV[3]), tonumber(ARGV[4])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local function int(n) return string.format('%d', n) end
local function spent(member) return tonumber(string.match(member, ':(%d+)$')) end

redis.call('ZREMRANGEBYSCORE', log, '-inf', '(' .. int(now - window))
local wait = math.max(0, tonumber(redis.call('GET', blocked_key) or '0') - now)
local grants = redis.call('ZRANGE', log, 0, -1, 'WITHSCORES')
local count = #grants / 2
if count >= rpm then
  wait = math.max(wait, tonumber(grants[2 * (count - rpm) + 2]) + window - now + 1)
end
local used = 0
for i = 1, #grants, 2 do used = used + spent(grants[i]) end
if used + tokens > tpm then
  local freed = 0
  for i = 1, #grants, 2 do
    freed = freed + spent(grants[i])
    if used - freed + tokens <= tpm then
      wait = math.max(wait, tonumber(grants[i + 1]) + window - now + 1)
      break
    end
  end
end
if wait > 0 then return wait end
redis.call('ZADD', log, int(now), ARGV[5] .. ':' .. ARGV[4])
redis.call('PEXPIRE', log, ARGV[6])
return 0
"""

# KEYS: log, blocked. ARGV: rpm, window_us. Read-only (no tokens): {requests grantable now, µs until one is}.
PEEK_LUA = """
local rpm, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local since = string.format('%d', now - window)
local wait = math.max(0, tonumber(redis.call('GET', KEYS[2]) or '0') - now)
local count = redis.call('ZCOUNT', KEYS[1], since, '+inf')
if count >= rpm then
  local freeing = redis.call('ZRANGEBYSCORE', KEYS[1], since, '+inf', 'WITHSCORES', 'LIMIT', count - rpm, 1)
  wait = math.max(wait, tonumber(freeing[2]) + window - now + 1)
end
if wait > 0 then return {0, wait} end
return {rpm - count, 0}
"""

# KEYS: blocked. ARGV: seconds in µs. Extends (never shortens) the block; returns its end in µs.
PENALIZE_LUA = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local until_us = now + tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if until_us <= current then return current end
local ttl_ms = math.ceil((until_us - now) / 1000) + 1
redis.call('SET', KEYS[1], string.format('%d', until_us), 'PX', string.format('%d', ttl_ms))
return until_us
"""


class RedisRateLimiter:
    """:class:`~triage.ratelimit.base.RateLimiter` shared by every process using the same Redis and prefix."""

    def __init__(self, client: redis.Redis, settings: RateLimitSettings, *,
                 window_seconds: float = 60.0) -> None:
        if window_seconds <= 0:
            raise ValueError(f"window_seconds must be positive, got {window_seconds!r}")
        self._settings = settings
        self._window_us = math.ceil(window_seconds * 1_000_000)
        self._ttl_ms = math.ceil(window_seconds * 1000) + 1000
        self._acquire = client.register_script(ACQUIRE_LUA)
        self._penalize = client.register_script(PENALIZE_LUA)
        self._peek = client.register_script(PEEK_LUA)

    @classmethod
    def from_url(cls, url: str, settings: RateLimitSettings, *, window_seconds: float = 60.0) -> RedisRateLimiter:
        return cls(redis.Redis.from_url(url), settings, window_seconds=window_seconds)

    def keys(self, model: str) -> tuple[str, str]:
        """The sorted set of grants and the "blocked until" key of ``model``."""
        base = f"{self._settings.key_prefix}:{{{model}}}"
        return f"{base}:log", f"{base}:blocked"

    def acquire(self, model: str, tokens: int) -> float:
        budget = self._settings.budget(model)
        check_request(budget, tokens)
        args: list[int | str] = [budget.rpm, budget.tpm, self._window_us, tokens, uuid.uuid4().hex, self._ttl_ms]
        wait_us = int(self._acquire(keys=list(self.keys(model)), args=args))
        return wait_us / 1_000_000

    def penalize(self, model: str, seconds: float) -> None:
        micros = check_penalty(seconds)
        if micros:
            self._penalize(keys=[self.keys(model)[1]], args=[micros])

    def peek(self, model: str) -> Headroom:
        args = [self._settings.budget(model).rpm, self._window_us]
        left, wait_us = self._peek(keys=list(self.keys(model)), args=args)
        return Headroom.of(int(left), int(wait_us))
