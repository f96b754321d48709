"""Readiness of the shared backends for `/readyz`: can this replica reach Redis and PostgreSQL?

Each configured backend is pinged over a connection of the probe's own (not the app's pools,
whose state says nothing certain about the server now), with a short timeout. The answer is
kept for `CACHE_S`, and concurrent probes share one check, so a storm of probes costs one
ping per backend per second. A backend that comes back is seen at the next check: readiness
returns on its own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from tokenrelay.config import Settings

logger = logging.getLogger("tokenrelay.readiness")

CACHE_S = 1.0
TIMEOUT_S = 0.5


class Readiness:
    def __init__(
        self, settings: Settings, *, cache_s: float = CACHE_S, timeout_s: float = TIMEOUT_S
    ) -> None:
        self._redis_url = settings.redis_url
        self._database_url = settings.database_url
        self._cache_s = cache_s
        self._timeout_s = timeout_s
        self._redis: Any = None
        self._pg: Any = None
        self._checked_at = -1e9
        self._result: dict[str, str] = {}
        self._lock = asyncio.Lock()

    async def backends(self) -> dict[str, str]:
        """{"redis": "ok" | "unreachable", "postgres": ...} for the configured backends."""
        async with self._lock:
            if time.monotonic() - self._checked_at >= self._cache_s:
                self._result = await self._check()
                self._checked_at = time.monotonic()
            return dict(self._result)

    async def _check(self) -> dict[str, str]:
        probes: dict[str, Any] = {}
        if self._redis_url:
            probes["redis"] = self._ping_redis()
        if self._database_url:
            probes["postgres"] = self._ping_postgres()
        if not probes:
            return {}
        outcomes = await asyncio.gather(*probes.values(), return_exceptions=True)
        result: dict[str, str] = {}
        for name, outcome in zip(probes, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                if not isinstance(outcome, Exception):
                    raise outcome
                logger.warning("readiness: %s is unreachable (%s)", name, type(outcome).__name__)
                result[name] = "unreachable"
            else:
                result[name] = "ok"
        return result

    async def _ping_redis(self) -> None:
        if self._redis is None:
            import redis.asyncio as aioredis  # lazy: the optional `redis` extra

            self._redis = aioredis.Redis.from_url(
                str(self._redis_url),
                socket_connect_timeout=self._timeout_s,
                socket_timeout=self._timeout_s,
                retry_on_timeout=False,
            )
        await asyncio.wait_for(self._redis.ping(), self._timeout_s * 2)

    async def _ping_postgres(self) -> None:
        try:
            if self._pg is None or self._pg.is_closed():
                import asyncpg  # lazy: the optional `postgres` extra

                self._pg = await asyncio.wait_for(
                    asyncpg.connect(str(self._database_url), timeout=self._timeout_s),
                    self._timeout_s * 2,
                )
            await self._pg.fetchval("SELECT 1", timeout=self._timeout_s)
        except BaseException:
            pg, self._pg = self._pg, None
            if pg is not None:
                pg.terminate()
            raise

    async def aclose(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None
        if self._pg is not None:
            self._pg.terminate()
            self._pg = None
