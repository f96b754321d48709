"""The limiter protocol and the token-bucket arithmetic, as pure functions."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class LimitPolicy:
    rate_per_minute: float  # 0: no request-rate limit
    burst: int  # bucket size: requests allowed at once before the rate applies
    max_streams: int  # running streams per client; 0: no limit
    stream_slot_ttl_s: float  # a slot nobody released (crashed replica) frees itself after this

    @property
    def rate_per_s(self) -> float:
        return self.rate_per_minute / 60.0

    @property
    def limits_rate(self) -> bool:
        return self.rate_per_minute > 0

    @property
    def limits_streams(self) -> bool:
        return self.max_streams > 0


@dataclass(frozen=True, slots=True)
class Bucket:
    tokens: float
    updated: float  # seconds, on whatever clock the caller uses


@dataclass(frozen=True, slots=True)
class RateDecision:
    allowed: bool
    retry_after_s: float = 0.0  # when refused: until one token is back


def take_token(
    bucket: Bucket | None, now: float, rate_per_s: float, burst: int
) -> tuple[Bucket, RateDecision]:
    """Refill `bucket` up to `now` and take one token if there is one.

    A new client starts with a full bucket (`burst` tokens). Time going backwards (another
    replica's clock) never adds tokens.
    """
    if bucket is None:
        tokens = float(burst)
    else:
        elapsed = max(0.0, now - bucket.updated)
        tokens = min(float(burst), bucket.tokens + elapsed * rate_per_s)
    if tokens >= 1.0:
        return Bucket(tokens - 1.0, now), RateDecision(True)
    wait = (1.0 - tokens) / rate_per_s if rate_per_s > 0 else math.inf
    return Bucket(tokens, now), RateDecision(False, wait)


def full_after(bucket: Bucket, rate_per_s: float, burst: int) -> float:
    """Seconds until `bucket` is full again (then forgetting it changes nothing)."""
    if rate_per_s <= 0:
        return math.inf
    return max(0.0, (burst - bucket.tokens) / rate_per_s)


class Limiter(Protocol):
    """Counts per client. `subject` is a stable, non-secret id: `key:<owner>` or `ip:<addr>`."""

    policy: LimitPolicy

    async def hit(self, subject: str) -> RateDecision:
        """Count one request against the subject's rate."""
        ...

    async def acquire_stream(self, subject: str, slot_id: str) -> bool:
        """Take a running-stream slot; False when the subject already has `max_streams`."""
        ...

    async def release_stream(self, subject: str, slot_id: str) -> None:
        """Give the slot back (idempotent)."""
        ...

    async def aclose(self) -> None: ...
