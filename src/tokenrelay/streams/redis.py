"""The shared stream log on Redis Streams, for several replicas.

Streams generated here are also kept in memory, so local readers (the common case) never
wait on Redis. Every event is copied to a Redis stream whose entry ids are `0-<seq>`, so any
replica can replay from a `Last-Event-ID` and follow live with XREAD. Writes are batched: one
background flusher pipelines all pending appends, so Redis costs one round trip per batch, not
per token. Streams are bounded (MAXLEN) and expire (`stream_ttl_s` after they finish).

Exact under faults (issue #19); each decision two replicas could race on is one Lua script
(streams/redis_lua.py), and readers of other replicas' streams are streams/redis_reader.py:
- **The owner's lease** (`alive:<id>`) is renewed on a timer, every `lease_s / 3`, for every
  unfinished stream held here, in one round trip: a model that says nothing is not lost.
- **Declaring a stream lost** is a conditional append: a reader that finds no new events and
  no lease runs a script that appends the terminal `error` after the stream's last id, marks
  it finished and lost, and moves the stream's last id past every `0-<seq>`, so all readers
  read the same event and no late write of the owner can follow it. The owner learns it from
  a refused write or from its lease timer, and stops copying that stream (a warning).
- **Redis restarted without persistence**: the owner keeps every event of its streams here;
  its lease timer sees a stream's `meta` gone and writes the stream again, meta and events,
  in one script; so does the flusher after any failed write (never a batch retried blindly).
  Finished streams still held here are written again too, so ownership checks stay right.
- **Readers never skip**: each entry must be the seq after the last; at a gap (or a stream
  that vanished) a reader waits up to a lease for the owner to write it again, else it ends
  with `STREAM_INCOMPLETE`. Redis away under a reader: it retries for `outage_s`, then ends
  with a retryable `BACKEND_UNAVAILABLE`. Those terminal events are the reader's own, not in
  the log: seq `READER_SEQ`, sent without an `id:` so that a retry resumes exactly.

Other cross-replica coordination:
- `cancel` pub/sub channel: a cancel received by any replica reaches the one generating;
- `lease:<id>` keys: a replica following a stream it does not generate keeps a short lease,
  so the generating replica does not cancel it as abandoned.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Set
from typing import Any

from tokenrelay.errors import BackendUnavailable
from tokenrelay.events import Encoded, Envelope
from tokenrelay.i18n import tr
from tokenrelay.streams import redis_lua as lua
from tokenrelay.streams.log import (
    MemoryStreamLog,
    PumpSubscription,
    StreamInfo,
    Subscription,
    not_found,
)
from tokenrelay.streams.redis_reader import OUTAGE_S, RemoteReader
from tokenrelay.streams.tasks import stop

logger = logging.getLogger("tokenrelay.streams.redis")

_NONE: frozenset[str] = frozenset()


def backend_down(exc: BaseException) -> BackendUnavailable:
    return BackendUnavailable(
        tr("the server cannot reach its shared stream log right now"),
        suggestion=tr("try again in a moment"),
        details={
            "operator": f"check TOKENRELAY_REDIS_URL and that Redis is up ({type(exc).__name__})"
        },
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
        lease_s: float = 15.0,
        outage_s: float = OUTAGE_S,
    ) -> None:
        self._redis = client
        self._ttl_s = ttl_s
        self._max_len = max_len
        self._max_age_s = max_age_s  # how long an unfinished stream's keys may live
        self._prefix = prefix
        self._lease_s = lease_s
        self._local = MemoryStreamLog(ttl_s=ttl_s)
        self._pending: list[tuple[str, Envelope]] = []
        self._dirty: set[str] = set()  # streams to write again whole, from the local copy
        self._lost: set[str] = set()  # streams declared lost elsewhere: no longer copied
        self._wake = asyncio.Event()
        self._inflight = 0
        self._flusher: asyncio.Task[None] | None = None
        self._renewer: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._reader = RemoteReader(
            client, prefix=prefix, lease_s=lease_s, ttl_s=ttl_s, outage_s=outage_s
        )
        self._renew = client.register_script(lua.RENEW)
        self._rewrite = client.register_script(lua.REWRITE)

    @classmethod
    async def connect(cls, url: str, **kwargs: Any) -> RedisStreamLog:
        try:
            import redis.asyncio as aioredis
        except ImportError as exc:  # pragma: no cover
            raise BackendUnavailable(
                tr("the server's shared stream log is not available"),
                suggestion=tr("try again later, or tell whoever runs the server"),
                details={
                    "operator": "TOKENRELAY_REDIS_URL is set but the redis package is not "
                    "installed: pip install 'tokenrelay[redis]', or unset TOKENRELAY_REDIS_URL"
                },
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
    async def create(
        self,
        stream_id: str,
        *,
        owner: str | None,
        session_id: str | None,
        locale: str | None = None,
    ) -> None:
        meta = {
            "owner": owner or "",
            "has_owner": int(owner is not None),
            "session_id": session_id or "",
            "locale": locale or "",
        }
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hset(self._k("meta", stream_id), mapping=meta)
                pipe.expire(self._k("meta", stream_id), int(self._max_age_s))
                pipe.set(self._k("alive", stream_id), 1, px=self._lease_ms)
                await pipe.execute()
        except Exception as exc:
            raise backend_down(exc) from exc
        await self._local.create(stream_id, owner=owner, session_id=session_id, locale=locale)
        self._ensure_tasks()

    def lane(
        self, stream_id: str, other: Callable[[Any], object] | None = None
    ) -> Callable[[Any], object]:
        emit = self.emit

        def put(data: Any) -> None:
            if type(data) is str:
                emit(stream_id, Encoded("token", data))
            elif other is not None:
                other(data)
            else:
                emit(stream_id, data)

        return put

    def emit(self, stream_id: str, event: object) -> Envelope:
        env = self._local.emit(stream_id, event)
        self._pending.append((stream_id, env))
        self._wake.set()
        return env

    @property
    def _lease_ms(self) -> int:
        return max(1, int(self._lease_s * 1000))

    def _ensure_tasks(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_forever(), name="redis-log-flusher")
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.create_task(self._renew_forever(), name="redis-log-lease")

    async def _flush_forever(self) -> None:
        backoff = 0.05
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending or self._dirty:
                # taken together, with no await between: a stream written again from its
                # copy has exactly the events of `batch` and before, later ones stay pending
                batch, self._pending = self._pending, []
                dirty: Set[str] = _NONE
                rewrites: list[tuple[str, list[str | int]]] = []
                if self._dirty:
                    dirty, self._dirty = self._dirty, set()
                    rewrites = [r for r in map(self._copy_of, dirty) if r is not None]
                if dirty or self._lost:
                    skip = dirty | self._lost
                    batch = [item for item in batch if item[0] not in skip]
                self._inflight = len(batch) + len(rewrites)
                try:
                    await self._write(batch, rewrites)
                    backoff = 0.05
                except Exception as exc:
                    logger.warning(
                        "redis stream log write failed (%s); the streams are written again"
                        " from this replica's copy when Redis answers",
                        type(exc).__name__,
                        exc_info=backoff == 0.05,  # the trace once per outage
                    )
                    # never a gap: each stream touched is written again whole, from memory
                    self._dirty |= dirty | {stream_id for stream_id, _ in batch}
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 2.0)
                finally:
                    self._inflight = 0

    def _copy_of(self, stream_id: str) -> tuple[str, list[str | int]] | None:
        """The rewrite script's arguments for one stream, from the local copy (None when it
        is no longer held here, or was declared lost)."""
        stream = self._local.stream(stream_id)
        if stream is None or stream_id in self._lost:
            return None
        count = stream.last_seq
        first = max(1, count - self._max_len + 1)
        if stream.finished:
            expiry = math.ceil(max(0.0, stream.expires_at - time.monotonic())) + 1
        else:
            expiry = int(self._max_age_s)
        head: list[str | int] = [
            stream.owner or "",
            int(stream.owner is not None),
            stream.session_id or "",
            int(stream.finished),
            self._lease_ms,
            expiry,
            first,
            stream.locale or "",
        ]
        return stream_id, head + stream.items[2 * (first - 1) :]

    async def _write(
        self,
        batch: list[tuple[str, Envelope]],
        rewrites: list[tuple[str, list[str | int]]],
    ) -> None:
        # per command: the stream whose copy a failure of it spoils (None: harmless)
        spoils: list[str | None] = []
        async with self._redis.pipeline(transaction=False) as pipe:
            for stream_id, args in rewrites:
                await self._rewrite(keys=self._keys(stream_id), args=args, client=pipe)
                spoils.append(stream_id)
            for stream_id, env in batch:
                key = self._k("s", stream_id)
                pipe.xadd(
                    key,
                    {"t": env.type, "d": env.data},
                    id=f"0-{env.seq}",
                    maxlen=self._max_len,
                    approximate=True,
                )
                spoils.append(stream_id)
                if env.terminal:
                    ttl = int(self._ttl_s) + 1
                    pipe.hset(self._k("meta", stream_id), "finished", 1)
                    pipe.expire(key, ttl)
                    pipe.expire(self._k("meta", stream_id), ttl)
                    pipe.delete(self._k("alive", stream_id))
                    spoils += (None, None, None, None)
                elif env.seq == 1:  # the key is new: bound its life until the lease renews it
                    pipe.expire(key, int(self._max_age_s))
                    spoils.append(None)
            results = await pipe.execute(raise_on_error=False)
        for (stream_id, _), result in zip(rewrites, results, strict=False):
            if result == 0:
                self._stop_copying(stream_id)
            elif isinstance(result, Exception) and str(result).startswith("NOSCRIPT"):
                self._dirty.add(stream_id)  # Redis restarted between loading and running
            elif isinstance(result, Exception):
                self._stop_copying(stream_id, f"Redis refused to take it again ({result})")
        start = len(rewrites)
        failed = [i for i, r in enumerate(results[start:], start) if isinstance(r, Exception)]
        for i in failed:
            # an id already there: a pipeline that redis-py sent again after a dropped
            # connection, or a reader declared the stream lost; writing the stream again from
            # its copy tells which (the script checks)
            spoilt = spoils[i]
            if spoilt is not None and spoilt not in self._lost:
                self._dirty.add(spoilt)

    def _stop_copying(
        self,
        stream_id: str,
        why: str = "a reader on another replica declared it lost while this replica could not"
        " renew its lease (Redis away, or this process stalled, for longer than stream_lease_s)",
    ) -> None:
        self._lost.add(stream_id)
        logger.warning(
            "stream %s is no longer copied to Redis, its remaining events stay local: %s",
            stream_id,
            why,
        )

    def _keys(self, stream_id: str) -> list[str]:
        return lua.stream_keys(self._prefix, stream_id)

    async def _renew_forever(self) -> None:
        """Renew the lease of every stream held here, one round trip per `lease_s / 3`, and
        write again any stream that Redis lost (a restart without persistence)."""
        while True:
            await asyncio.sleep(self._lease_s / 3)
            try:
                await self._renew_all()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("redis stream log could not renew its leases", exc_info=True)

    async def _renew_all(self) -> None:
        held = self._local.held()
        if self._lost:
            self._lost &= {stream_id for stream_id, _ in held}
        held = [(sid, stream) for sid, stream in held if sid not in self._lost]
        if not held:
            return
        keys: list[str] = []
        args: list[int] = [self._lease_ms, int(self._max_age_s)]
        for stream_id, _ in held:
            keys += self._keys(stream_id)
        statuses = await self._renew(keys=keys, args=args)
        for (stream_id, _), status in zip(held, statuses, strict=True):
            if status == lua.GONE:
                self._dirty.add(stream_id)
            elif status == lua.LOST and stream_id not in self._lost:
                self._stop_copying(stream_id)
        if self._dirty:
            self._wake.set()

    async def flush(self, within_s: float = 5.0) -> None:
        """Wait until everything appended so far is in Redis (used at shutdown and in tests)."""
        deadline = time.monotonic() + within_s
        while (self._pending or self._inflight or self._dirty) and time.monotonic() < deadline:
            self._wake.set()
            await asyncio.sleep(0.005)

    # -- reading
    async def read(self, stream_id: str, after_seq: int = 0) -> AsyncIterator[Envelope]:
        if self._local.is_local(stream_id):
            async for env in self._local.read(stream_id, after_seq):
                yield env
            return
        async for env in self._reader.read(stream_id, after_seq):
            yield env

    async def subscribe(self, stream_id: str, after_seq: int = 0) -> Subscription:
        if self._local.is_local(stream_id):
            return await self._local.subscribe(stream_id, after_seq)
        if await self.info(stream_id) is None:
            raise not_found(stream_id)
        return PumpSubscription(self._reader.read(stream_id, after_seq), after_seq)

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
        if not meta.get("has_owner"):
            return None  # unknown, or lost by Redis and not yet written again by its owner
        return StreamInfo(
            stream_id=stream_id,
            owner=meta.get("owner") if meta.get("has_owner") == "1" else None,
            session_id=meta.get("session_id") or None,
            finished=meta.get("finished") == "1",
            last_seq=int(last[0][0].split("-")[1]) if last else 0,
            locale=meta.get("locale") or None,
        )

    # -- coordination
    def release_readers(self) -> None:
        self._reader.released = True
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
        # cancelled for good, bounded: a cancel that lands as a redis-py send completes is
        # lost on Python 3.11 (streams/tasks.py), and the loop would then wait on forever
        for task in (self._flusher, self._renewer, self._listener):
            await stop(task)
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
