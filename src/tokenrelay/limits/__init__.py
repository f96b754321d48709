"""Request-rate and concurrent-stream limits per client (API key, or IP without keys).

`open_limiter(settings)` picks the backend: in-process by default, Redis when
`TOKENRELAY_REDIS_URL` is set so that every replica shares the same counts.
"""

from __future__ import annotations

from tokenrelay.config import Settings
from tokenrelay.limits.base import Limiter, LimitPolicy, RateDecision, take_token
from tokenrelay.limits.memory import MemoryLimiter
from tokenrelay.limits.redis import RedisLimiter

__all__ = ["LimitPolicy", "Limiter", "MemoryLimiter", "RateDecision", "open_limiter", "take_token"]


def policy_from(settings: Settings) -> LimitPolicy:
    return LimitPolicy(
        rate_per_minute=settings.rate_limit_per_minute,
        burst=settings.rate_limit_burst,
        max_streams=settings.max_streams_per_client,
        # a stream cannot outlive its deadline; a crashed replica's slots expire after that
        stream_slot_ttl_s=settings.stream_deadline_s + settings.disconnect_grace_s + 60.0,
    )


def open_limiter(settings: Settings) -> Limiter:
    """The limiter for these settings. Redis connects lazily, on the first limited request."""
    policy = policy_from(settings)
    if settings.redis_url:
        return RedisLimiter.from_url(settings.redis_url, policy, prefix=settings.redis_prefix)
    return MemoryLimiter(policy)
