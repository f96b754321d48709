"""In-process limits: one dict of token buckets and one of stream slots, on one event loop."""

from __future__ import annotations

import time

from tokenrelay.limits.base import Bucket, LimitPolicy, RateDecision, full_after, take_token

_PRUNE_AT = 10_000  # buckets kept before idle (full) ones are forgotten


class MemoryLimiter:
    def __init__(self, policy: LimitPolicy) -> None:
        self.policy = policy
        self._buckets: dict[str, Bucket] = {}
        self._slots: dict[str, set[str]] = {}

    async def hit(self, subject: str) -> RateDecision:
        if not self.policy.limits_rate:
            return RateDecision(True)
        now = time.monotonic()
        bucket, decision = take_token(
            self._buckets.get(subject), now, self.policy.rate_per_s, self.policy.burst
        )
        self._buckets[subject] = bucket
        if len(self._buckets) > _PRUNE_AT:
            self._prune(now)
        return decision

    def _prune(self, now: float) -> None:
        rate, burst = self.policy.rate_per_s, self.policy.burst
        for subject, bucket in list(self._buckets.items()):
            if bucket.updated + full_after(bucket, rate, burst) <= now:
                del self._buckets[subject]

    async def acquire_stream(self, subject: str, slot_id: str) -> bool:
        if not self.policy.limits_streams:
            return True
        slots = self._slots.setdefault(subject, set())
        if len(slots) >= self.policy.max_streams:
            return False
        slots.add(slot_id)
        return True

    async def release_stream(self, subject: str, slot_id: str) -> None:
        slots = self._slots.get(subject)
        if slots is None:
            return
        slots.discard(slot_id)
        if not slots:
            del self._slots[subject]

    def running(self, subject: str) -> int:
        return len(self._slots.get(subject, ()))

    async def aclose(self) -> None:
        return None
