"""The shared stream log on Redis Streams, for several replicas.

Streams generated here are also kept in memory, so local readers (the common case) never
wait on Redis. Every event is copied to a Redis stream whose entry ids are `0-<seq>`, so any
replica can replay from a `Last-Event-ID` and follow live with XREAD. Writes are batched: one
background flusher pipelines all pending appends, so Redis costs one round trip per batch, not
per token. Streams are bounded (MAXLEN) and expire (`stream_ttl_s` after they finish).

Cross-replica coordination, all through Redis:
- `cancel` pub/sub channel: a cancel received by any replica reaches the one generating;
- `lease:<id>` keys: a replica following a stream it does not generate keeps a short lease,
  so the generating replica does not cancel it as abandoned;
- `alive:<id>` keys: refreshed by the generating replica; a remote reader that sees it vanish
  without a terminal event reports the stream as lost instead of waiting forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from tokenrelay.errors import BackendUnavailable, ErrorCode, TokenRelayError
from tokenrelay.events import Encoded, Envelope, ErrorEvent
from tokenrelay.streams.log import (
    MemoryStreamLog,
    PumpSubscription,
    StreamInfo,
    Subscription,
    not_found,
)

logger = logging.getLogger("tokenrelay.streams.redis")

LEASE_S = 5.0
ALIVE_S = 15.0
_BLOCK_MS = 1000


def backend_down(exc: BaseException) -> BackendUnavailable:
    return BackendUnavailable(
        f"the shared stream log (Redis) is unreachable ({type(exc).__name__})",
        suggestion="retry in a moment; operators: check TOKENRELAY_REDIS_URL and Redis",
    )


class RedisStreamLog:
    def __init__(
        self,
        client: Any,
        *,
        ttl_s: float = 300.0,
        max_len: int = 100_000,
        max_age_s: float = 3600.0,
        prefix: str = "tokenrelay",
    ) -> None:
        self._redis = client
        self._ttl_s = ttl_s
        self._max_len = max_len
        self._max_age_s = max_age_s  # how long an unfinished stream's keys may live
        self._prefix = prefix
        self._local = MemoryStreamLog(ttl_s=ttl_s)
        self._pending: list[tuple[str, Envelope]] = []
        self._wake = asyncio.Event()
        self._inflight = 0
        self._flusher: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._alive_at: dict[str, float] = {}
        self._released = False

    @classmethod
    async def connect(cls, url: str, **kwargs: Any) -> RedisStreamLog:
        try:
            import redis.asyncio as aioredis
        except ImportError as exc:  # pragma: no cover
            raise BackendUnavailable(
                "TOKENRELAY_REDIS_URL is set but the redis package is not installed",
                suggestion="pip install 'tokenrelay[redis]', or unset TOKENRELAY_REDIS_URL",
            ) from exc
        client = aioredis.Redis.from_url(url, decode_responses=True, health_check_interval=10)
        try:
            await client.ping()
        except Exception as exc:
            await client.aclose()
            raise backend_down(exc) from exc
        return cls(client, **kwargs)

    # -- keys
    def _k(self, kind: str, stream_id: str) -> str:
        return f"{self._prefix}:{kind}:{stream_id}"

    @property
    def _cancel_channel(self) -> str:
        return f"{self._prefix}:cancel"

    # -- writing
    async def create(self, stream_id: str, *, owner: str | None, session_id: str | None) -> None:
        meta = {
            "owner": owner or "",
            "has_owner": int(owner is not None),
            "session_id": session_id or "",
        }
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hset(self._k("meta", stream_id), mapping=meta)
                pipe.expire(self._k("meta", stream_id), int(self._max_age_s))
                pipe.set(self._k("alive", stream_id), 1, ex=int(ALIVE_S))
                await pipe.execute()
        except Exception as exc:
            raise backend_down(exc) from exc
        await self._local.create(stream_id, owner=owner, session_id=session_id)
        self._alive_at[stream_id] = time.monotonic()
        self._ensure_flusher()

    async def append(self, stream_id: str, event: object) -> Envelope:
        return self.emit(stream_id, event)

    def lane(self, stream_id: str) -> Callable[[str], object]:
        emit = self.emit

        def put(data: str) -> None:
            emit(stream_id, Encoded("token", data))

        return put

    def emit(self, stream_id: str, event: object) -> Envelope:
        env = self._local.emit(stream_id, event)
        self._pending.append((stream_id, env))
        self._wake.set()
        return env

    def _ensure_flusher(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_forever(), name="redis-log-flusher")

    async def _flush_forever(self) -> None:
        backoff = 0.05
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch, self._pending = self._pending, []
                self._inflight = len(batch)
                try:
                    await self._write(batch)
                    backoff = 0.05
                except Exception:
                    logger.warning("redis stream log write failed; retrying", exc_info=True)
                    # keep the events (the newest, if Redis stays away for long) and retry
                    self._pending = (batch + self._pending)[-200_000:]
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 2.0)
                finally:
                    self._inflight = 0

    async def _write(self, batch: list[tuple[str, Envelope]]) -> None:
        now = time.monotonic()
        async with self._redis.pipeline(transaction=False) as pipe:
            for stream_id, env in batch:
                key = self._k("s", stream_id)
                pipe.xadd(
                    key,
                    {"t": env.type, "d": env.data},
                    id=f"0-{env.seq}",
                    maxlen=self._max_len,
                    approximate=True,
                )
                if env.terminal:
                    ttl = int(self._ttl_s) + 1
                    pipe.hset(self._k("meta", stream_id), "finished", 1)
                    pipe.expire(key, ttl)
                    pipe.expire(self._k("meta", stream_id), ttl)
                    pipe.delete(self._k("alive", stream_id))
                    self._alive_at.pop(stream_id, None)
                elif now - self._alive_at.get(stream_id, 0.0) > ALIVE_S / 3:
                    pipe.expire(key, int(self._max_age_s))
                    pipe.set(self._k("alive", stream_id), 1, ex=int(ALIVE_S))
                    self._alive_at[stream_id] = now
            await pipe.execute()

    async def flush(self, within_s: float = 5.0) -> None:
        """Wait until everything appended so far is in Redis (used at shutdown and in tests)."""
        deadline = time.monotonic() + within_s
        while (self._pending or self._inflight) and time.monotonic() < deadline:
            self._wake.set()
            await asyncio.sleep(0.005)

    # -- reading
    def is_local(self, stream_id: str) -> bool:
        return self._local.is_local(stream_id)

    async def read(self, stream_id: str, after_seq: int = 0) -> AsyncIterator[Envelope]:
        if self._local.is_local(stream_id):
            async for env in self._local.read(stream_id, after_seq):
                yield env
            return
        async for env in self._read_remote(stream_id, after_seq):
            yield env

    async def subscribe(self, stream_id: str, after_seq: int = 0) -> Subscription:
        if self._local.is_local(stream_id):
            return await self._local.subscribe(stream_id, after_seq)
        if await self.info(stream_id) is None:
            raise not_found(stream_id)
        return PumpSubscription(self._read_remote(stream_id, after_seq), after_seq)

    async def _read_remote(self, stream_id: str, after_seq: int) -> AsyncIterator[Envelope]:
        key = self._k("s", stream_id)
        last = f"0-{max(0, after_seq)}"
        lease_at = 0.0
        try:
            while True:
                now = time.monotonic()
                if now - lease_at > LEASE_S / 3:
                    await self._redis.set(self._k("lease", stream_id), 1, ex=int(LEASE_S))
                    lease_at = now
                reply = await self._redis.xread({key: last}, count=1000, block=_BLOCK_MS)
                entries = reply[0][1] if reply else []
                for entry_id, fields in entries:
                    last = entry_id
                    env = Envelope(int(entry_id.split("-")[1]), fields["t"], fields["d"])
                    yield env
                    if env.terminal:
                        return
                if entries:
                    continue
                if self._released:
                    return
                if not await self._redis.exists(self._k("alive", stream_id)):
                    # the generating replica vanished: nothing more will come
                    if await self._redis.xread({key: last}, count=1):
                        continue
                    lost = TokenRelayError(
                        "the replica generating this answer went away",
                        suggestion="send the message again",
                        code=ErrorCode.BACKEND_UNAVAILABLE,
                        retryable=True,
                    )
                    seq = int(last.split("-")[1]) + 1
                    yield Envelope(seq, "error", ErrorEvent.from_error(lost).model_dump_json())
                    return
        except TokenRelayError:
            raise
        except Exception as exc:
            raise backend_down(exc) from exc

    async def info(self, stream_id: str) -> StreamInfo | None:
        local = await self._local.info(stream_id)
        if local is not None:
            return local
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hgetall(self._k("meta", stream_id))
                pipe.xrevrange(self._k("s", stream_id), count=1)
                meta, last = await pipe.execute()
        except Exception as exc:
            raise backend_down(exc) from exc
        if not meta:
            return None
        return StreamInfo(
            stream_id=stream_id,
            owner=meta.get("owner") if meta.get("has_owner") == "1" else None,
            session_id=meta.get("session_id") or None,
            finished=meta.get("finished") == "1",
            last_seq=int(last[0][0].split("-")[1]) if last else 0,
        )

    # -- coordination
    def release_readers(self) -> None:
        self._released = True
        self._local.release_readers()

    async def has_remote_readers(self, stream_id: str) -> bool:
        try:
            return bool(await self._redis.exists(self._k("lease", stream_id)))
        except Exception:
            return False

    async def request_cancel(self, stream_id: str) -> bool:
        try:
            receivers = await self._redis.publish(self._cancel_channel, stream_id)
        except Exception as exc:
            raise backend_down(exc) from exc
        return bool(receivers)

    def on_cancel_request(self, callback: Callable[[str], Awaitable[object]]) -> None:
        if self._listener is None:
            self._listener = asyncio.create_task(self._listen(callback), name="redis-cancels")

    async def _listen(self, callback: Callable[[str], Awaitable[object]]) -> None:
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._cancel_channel)
                async for message in pubsub.listen():
                    stream_id = message.get("data")
                    if isinstance(stream_id, str) and self._local.is_local(stream_id):
                        await callback(stream_id)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("redis cancel listener lost its connection; retrying", exc_info=True)
                await asyncio.sleep(1.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    async def aclose(self) -> None:
        await self.flush()
        for task in (self._flusher, self._listener):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self._local.aclose()
        await self._redis.aclose()

    async def snapshot(self, stream_id: str) -> list[Envelope]:
        """This replica's own copy of a stream it generates, else Redis's (XRANGE)."""
        if self._local.is_local(stream_id):
            return await self._local.snapshot(stream_id)
        try:
            entries = await self._redis.xrange(self._k("s", stream_id))
        except Exception as exc:
            raise backend_down(exc) from exc
        return [Envelope(int(i.split("-")[1]), f["t"], f["d"]) for i, f in entries]


__all__ = ["RedisStreamLog", "not_found"]
