"""Limits shared by every replica, in Redis. Each check is one Lua script: atomic, one round trip.

Keys (all under `<prefix>:limits:`) expire by themselves: a rate bucket once it would be full
again, a stream slot `stream_slot_ttl_s` after it was taken, so the counts of a replica that
crashed without releasing its slots free themselves. Time is Redis's own clock (`TIME`), so
replicas with skewed clocks agree.
"""

from __future__ import annotations

import logging
from typing import Any

from tokenrelay.errors import BackendUnavailable, misconfigured
from tokenrelay.i18n import tr
from tokenrelay.limits.base import LimitPolicy, RateDecision

logger = logging.getLogger("tokenrelay.limits")

# KEYS[1]: bucket hash. ARGV: rate per second, burst. Returns {allowed (0/1), wait seconds}.
_TAKE_TOKEN = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local allowed = 0
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil((burst - tokens) / rate) + 1)
return {allowed, tostring(wait)}
"""

# KEYS[1]: sorted set of slot ids scored by expiry. ARGV: slot id, max, ttl seconds.
_ACQUIRE_SLOT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  return 1
end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
local ttl = tonumber(ARGV[3])
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('EXPIRE', KEYS[1], math.ceil(ttl) + 1)
return 1
"""


def limits_down(exc: BaseException) -> BackendUnavailable:
    return BackendUnavailable(
        tr("the server cannot check its rate limits right now"),
        suggestion=tr("try again in a moment"),
        retry_after_s=1.0,
        details={
            "operator": "check TOKENRELAY_REDIS_URL and Redis (the rate limiter's store;"
            f" {type(exc).__name__})"
        },
    )


class RedisLimiter:
    def __init__(self, client: Any, policy: LimitPolicy, *, prefix: str = "tokenrelay") -> None:
        self.policy = policy
        self._redis = client
        self._prefix = f"{prefix}:limits"
        self._take = client.register_script(_TAKE_TOKEN)
        self._acquire = client.register_script(_ACQUIRE_SLOT)

    @classmethod
    def from_url(cls, url: str, policy: LimitPolicy, *, prefix: str = "tokenrelay") -> RedisLimiter:
        try:
            import redis.asyncio as aioredis
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise misconfigured(
                BackendUnavailable,
                tr("the server cannot check its rate limits right now"),
                "TOKENRELAY_REDIS_URL is set but the redis package is not installed:"
                " pip install 'tokenrelay[redis]', or unset TOKENRELAY_REDIS_URL",
            ) from exc
        client = aioredis.Redis.from_url(url, decode_responses=True)
        return cls(client, policy, prefix=prefix)

    def _key(self, kind: str, subject: str) -> str:
        return f"{self._prefix}:{kind}:{subject}"

    async def hit(self, subject: str) -> RateDecision:
        if not self.policy.limits_rate:
            return RateDecision(True)
        try:
            allowed, wait = await self._take(
                keys=[self._key("rate", subject)],
                args=[repr(self.policy.rate_per_s), self.policy.burst],
            )
        except Exception as exc:
            raise limits_down(exc) from exc
        return RateDecision(bool(int(allowed)), float(wait))

    async def acquire_stream(self, subject: str, slot_id: str) -> bool:
        if not self.policy.limits_streams:
            return True
        try:
            ok = await self._acquire(
                keys=[self._key("streams", subject)],
                args=[slot_id, self.policy.max_streams, repr(self.policy.stream_slot_ttl_s)],
            )
        except Exception as exc:
            raise limits_down(exc) from exc
        return bool(int(ok))

    async def release_stream(self, subject: str, slot_id: str) -> None:
        if not self.policy.limits_streams:
            return
        try:
            await self._redis.zrem(self._key("streams", subject), slot_id)
        except Exception:  # the slot expires by itself; a release must never fail a stream
            logger.warning("could not release stream slot %s of %s", slot_id, subject)

    async def running(self, subject: str) -> int:
        return int(await self._redis.zcard(self._key("streams", subject)))

    async def aclose(self) -> None:
        await self._redis.aclose()
