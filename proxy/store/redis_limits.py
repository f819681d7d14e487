"""Limiter state in the Redis store (``LimitStore`` of ``base.py``): token buckets and
semaphore slots, timed by the server's clock so replicas with skewed clocks share one limit.
Mixed into ``RedisStore``.
"""

from __future__ import annotations

import math

from proxy.store.base import (
    validate_bucket,
    validate_slot,
)
from proxy.store.redis_rows import RedisRole

# Server TIME, not each replica's clock: replicas with skewed clocks still share one bucket.
# Numbers go back as strings because Redis truncates a Lua number reply to an integer.
_TAKE_TOKENS = """
-- KEYS: bucket hash.  ARGV: rate per second, burst, cost
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate, burst, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'updated')
local tokens, updated = tonumber(state[1]), tonumber(state[2])
if not tokens or not updated then tokens, updated = burst, now end
tokens = math.min(burst, tokens + math.max(0, now - updated) * rate)
if tokens + 1e-9 < cost then return string.format('%.17g', (cost - tokens) / rate) end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', math.max(0, tokens - cost)),
           'updated', string.format('%.17g', now))
-- A bucket left alone refills completely; then it is the same as no bucket at all.
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return '0'
"""

_ACQUIRE_SLOT = """
-- KEYS: slots sorted set.  ARGV: limit, holder, ttl in ms
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
-- Holders that crashed without releasing lose their slot here, once their ttl has passed.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if not redis.call('ZSCORE', KEYS[1], ARGV[2])
   and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[2])
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
return 1
"""


class RedisLimits(RedisRole):
    """The ``LimitStore`` methods of ``RedisStore``."""

    def _register_limit_scripts(self) -> None:
        register = self._client.register_script
        self._take_tokens = register(_TAKE_TOKENS)
        self._acquire_slot = register(_ACQUIRE_SLOT)

    # -- limiter state ------------------------------------------------------------------------

    async def take_tokens(self, key: str, rate: float, burst: float, cost: float = 1.0) -> float:
        validate_bucket(rate, burst, cost)
        with self._unavailable("take_tokens"):
            wait = await self._take_tokens(
                keys=[self._key("bucket", key)], args=[repr(rate), repr(burst), repr(cost)]
            )
        return float(wait)

    async def acquire_slot(self, key: str, limit: int, holder: str, ttl: float) -> bool:
        validate_slot(limit, ttl)
        ttl_ms = max(1, math.ceil(ttl * 1000))
        with self._unavailable("acquire_slot"):
            got = await self._acquire_slot(
                keys=[self._key("slots", key)], args=[limit, holder, ttl_ms]
            )
        return bool(got)

    async def release_slot(self, key: str, holder: str) -> None:
        with self._unavailable("release_slot"):
            await self._client.zrem(self._key("slots", key), holder)
