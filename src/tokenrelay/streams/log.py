"""The stream log: every event of a stream, numbered from 1, readable from any position.

`StreamLog` is the protocol; `MemoryStreamLog` keeps streams in this process (the embedded
default). A reader replays what it missed and then follows live events until the terminal one.
Finished streams stay readable for `ttl_s`, then they are forgotten.

The memory log keeps each event as two strings (its type and its JSON) in one list per
stream, not as an object of its own: an `Envelope` is a named tuple, which the garbage
collector tracks for as long as it lives, and a log keeps every event of every stream of the
last `ttl_s` seconds. Readers get envelopes made as they take them, which live only until
they are encoded (docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
from bisect import bisect_right
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any, Protocol

from tokenrelay.errors import StreamNotFound, TokenRelayError, internal_error
from tokenrelay.events import Envelope, envelope, reader_error
from tokenrelay.i18n import tr
from tokenrelay.streams.tasks import cancel_for_good


@dataclass(frozen=True, slots=True)
class StreamInfo:
    stream_id: str
    owner: str | None
    session_id: str | None
    finished: bool
    last_seq: int
    locale: str | None = None  # the language of the request that started it (i18n)


class Subscription(Protocol):
    """A reader's view of one stream, without a task or an async iterator per event.

    `take(after)` returns what is there now; when it returns nothing and `done` is False, await
    `waiter()`, which resolves when more may have arrived. A reader that wants to wake for its
    own reasons (a heartbeat, a disconnect) resolves the waiter itself with `wake()`.
    """

    def take(self, after_seq: int) -> list[Envelope]: ...

    def pairs(self, after_seq: int, count: int) -> list[str]:
        """The `count` events after `after_seq` as the log keeps them, a flat list of type and
        JSON strings: what a reader that took events by push (`set_push`) hands its encoder
        (`Encoder.pairs`), without an envelope per event."""
        ...

    @property
    def done(self) -> bool:
        """Nothing more will arrive (the terminal event is there, or readers were released)."""
        ...

    def waiter(self) -> asyncio.Future[None]: ...

    def wake(self) -> None: ...

    def set_push(self, push: Callable[[int, str], bool] | None) -> None:
        """While set, a new event is first offered to `push(seq, type)` (called at once, from
        whoever appends); if it returns True the event counts as delivered (the reader writes
        it later, from `pairs`) and the waiter stays pending. A log may ignore this (then every
        event wakes the waiter)."""
        ...

    def close(self) -> None: ...


class StreamLog(Protocol):
    async def create(
        self,
        stream_id: str,
        *,
        owner: str | None,
        session_id: str | None,
        locale: str | None = None,
    ) -> None: ...

    def emit(self, stream_id: str, event: object) -> Envelope:
        """Number and store one event (a wire event model) now; returns its envelope.

        Never waits: the memory log stores in place, the Redis log queues the write for its
        background flusher. This is the hot path (one call per token)."""
        ...

    def lane(
        self, stream_id: str, other: Callable[[Any], object] | None = None
    ) -> Callable[[Any], object]:
        """One stream's way in, one call per event: a `str` is a token event's JSON
        (`events.token_json`), stored at once; anything else is handed to `other` (the
        runner's store: the lane is the pipeline's `StreamContext.emit`), or to `emit`. The
        stream must exist. This is the hot path: one call per token."""
        ...

    def read(self, stream_id: str, after_seq: int = 0) -> AsyncIterator[Envelope]:
        """Events with seq > after_seq, then live ones, until the terminal event."""
        ...

    async def subscribe(self, stream_id: str, after_seq: int = 0) -> Subscription:
        """Follow a stream from after `after_seq` (STREAM_NOT_FOUND when unknown or expired)."""
        ...

    async def info(self, stream_id: str) -> StreamInfo | None: ...

    def release_readers(self) -> None:
        """End every live read without a terminal event (this replica is draining)."""
        ...

    async def has_remote_readers(self, stream_id: str) -> bool:
        """Is a reader on another replica following this stream?"""
        ...

    async def request_cancel(self, stream_id: str) -> bool:
        """Ask the replica that generates `stream_id` to cancel it; False if none can."""
        ...

    def on_cancel_request(self, callback: Callable[[str], Awaitable[object]]) -> None:
        """Call `callback(stream_id)` when another replica asks to cancel a stream."""
        ...

    async def aclose(self) -> None: ...

    async def snapshot(self, stream_id: str) -> list[Envelope]:
        """The events stored now, without waiting for more ([] when unknown or expired):
        what crash recovery (sessions/recovery.py) reads a lost answer's text from."""
        ...


async def read_subscription(sub: Subscription, after_seq: int = 0) -> AsyncIterator[Envelope]:
    """A subscription as an async iterator, until the terminal event (or release)."""
    try:
        while True:
            batch = sub.take(after_seq)
            for env in batch:
                yield env
                if env.terminal:
                    return
            if batch:
                after_seq = batch[-1].seq
                continue
            if sub.done:
                return
            await sub.waiter()
    finally:
        sub.close()


def not_found(stream_id: str) -> StreamNotFound:
    return StreamNotFound(
        tr("stream {stream_id!r} is unknown or has expired", stream_id=stream_id),
        suggestion=tr("send the message again; a finished answer can be resumed for a few minutes"),
        details={"operator": "finished streams stay resumable for TOKENRELAY_STREAM_TTL_S"},
    )


def wake_all(waiters: list[asyncio.Future[None]]) -> None:
    for fut in waiters:
        if not fut.done():
            fut.set_result(None)
    waiters.clear()


_tuple_new = tuple.__new__  # a named tuple without its Python-level `__new__` (events.py)


@dataclass(slots=True)
class _MemoryStream:
    owner: str | None
    session_id: str | None
    locale: str | None = None  # the stream's language, for what its readers say themselves
    # the events, two strings each: the type, then the JSON (seq n at 2n-2 and 2n-1)
    items: list[str] = field(default_factory=list)
    finished: bool = False
    expires_at: float = float("inf")
    # futures of readers waiting for the next event; made only when a reader actually waits
    waiters: list[asyncio.Future[None]] = field(default_factory=list)
    # waiting readers that take events by push (see Subscription.set_push)
    pushers: list[MemorySubscription] = field(default_factory=list)
    # where the lane (`put`) hands what is not a token; dropped when the stream ends
    other: Callable[[Any], object] | None = None

    @property
    def last_seq(self) -> int:
        return len(self.items) >> 1

    def add(self, kind: str, data: str) -> None:
        """Store one event and hand it to the readers that wait for it."""
        items = self.items
        items.append(kind)
        items.append(data)
        if self.pushers:
            self.offer(len(items) >> 1, kind)
        if self.waiters:
            wake_all(self.waiters)

    def put(self, data: Any) -> None:
        """The lane (`StreamLog.lane`): `add` of a token's JSON, stored without looking the
        stream up and without asking whether it ends the stream. `add`'s body, not a call of
        it: this runs once per token, where a call shows (docs/benchmarks.md). Any other event
        is handed to `other`: the type test is here, not in a layer above, for the same reason."""
        if self.finished:
            raise RuntimeError("an event after the terminal one")
        if type(data) is not str:
            assert self.other is not None
            self.other(data)
            return
        items = self.items
        items.append("token")
        items.append(data)
        pushers = self.pushers
        if pushers:
            if len(pushers) == 1:  # one reader (as `offer`, without the call)
                sub = pushers[0]
                push = sub._push
                if push is None or not push(len(items) >> 1, "token"):
                    sub.close()
            else:
                self.offer(len(items) >> 1, "token")
        if self.waiters:
            wake_all(self.waiters)

    def offer(self, seq: int, kind: str) -> None:
        """Event `seq` to each reader that takes by push; one that refuses it leaves push
        mode and is woken (`MemorySubscription.close`). The lane (`put`) does this itself
        for a single reader, the case of every token."""
        for sub in tuple(self.pushers):  # a copy: `close` takes a reader off the list
            push = sub._push
            if push is None or not push(seq, kind):
                sub.close()

    def envelopes(self, after_seq: int) -> list[Envelope]:
        """The events after `after_seq`, as envelopes made now."""
        items = self.items
        start, end = after_seq << 1, len(items)
        if start + 2 == end:  # one event: what a waiting reader usually takes
            return [_tuple_new(Envelope, (after_seq + 1, items[start], items[start + 1]))]
        if start >= end:
            return []
        seqs = range(after_seq + 1, (end >> 1) + 1)
        events = zip(seqs, items[start::2], items[start + 1 :: 2], strict=False)
        return list(map(_tuple_new, repeat(Envelope), events))  # no Python loop per event


HeldStream = _MemoryStream  # what `MemoryStreamLog.held` hands out (the Redis log's owner copy)


class MemorySubscription:
    __slots__ = ("_fut", "_log", "_push", "_stream")

    def __init__(self, log: MemoryStreamLog, stream: _MemoryStream) -> None:
        self._log = log
        self._stream = stream
        self._fut: asyncio.Future[None] | None = None
        self._push: Callable[[int, str], bool] | None = None

    def take(self, after_seq: int) -> list[Envelope]:
        return self._stream.envelopes(after_seq)

    def pairs(self, after_seq: int, count: int) -> list[str]:
        start = after_seq << 1
        return self._stream.items[start : start + 2 * count]

    @property
    def done(self) -> bool:
        return self._stream.finished or self._log.released

    def waiter(self) -> asyncio.Future[None]:
        fut = self._fut
        if fut is None or fut.done():
            fut = self._fut = asyncio.get_running_loop().create_future()
            if self._push is not None:
                self._stream.pushers.append(self)
            else:
                self._stream.waiters.append(fut)
        return fut

    def set_push(self, push: Callable[[int, str], bool] | None) -> None:
        if push is None and self._push is not None:
            pushers = self._stream.pushers
            if self in pushers:
                pushers.remove(self)
        self._push = push

    def wake(self) -> None:
        if self._fut is not None and not self._fut.done():
            self._fut.set_result(None)

    def close(self) -> None:
        """Out of push mode, waiter woken: on a refused push, a release, or the reader's end."""
        self.set_push(None)
        self.wake()


class MemoryStreamLog:
    """In-process log. Appends are O(1); readers wait on one event per stream."""

    def __init__(self, ttl_s: float = 300.0) -> None:
        self._ttl_s = ttl_s
        self._streams: dict[str, _MemoryStream] = {}
        self._last_sweep = time.monotonic()
        self.released = False

    def __len__(self) -> int:
        return len(self._streams)

    async def create(
        self,
        stream_id: str,
        *,
        owner: str | None,
        session_id: str | None,
        locale: str | None = None,
    ) -> None:
        self._sweep()
        self._streams[stream_id] = _MemoryStream(owner=owner, session_id=session_id, locale=locale)

    def emit(self, stream_id: str, event: object) -> Envelope:
        stream = self._streams.get(stream_id)
        if stream is None or stream.finished:
            raise not_found(stream_id)
        env = envelope(stream.last_seq + 1, event)  # type: ignore[arg-type]
        if env.terminal:
            stream.finished = True
            stream.expires_at = time.monotonic() + self._ttl_s
            stream.other = None
        stream.add(env.type, env.data)
        return env

    def lane(
        self, stream_id: str, other: Callable[[Any], object] | None = None
    ) -> Callable[[Any], object]:
        stream = self._streams.get(stream_id)
        if stream is None:
            raise not_found(stream_id)
        stream.other = other if other is not None else functools.partial(self.emit, stream_id)
        return stream.put

    async def subscribe(self, stream_id: str, after_seq: int = 0) -> MemorySubscription:
        return MemorySubscription(self, self._live(stream_id))

    async def read(self, stream_id: str, after_seq: int = 0) -> AsyncIterator[Envelope]:
        async for env in read_subscription(await self.subscribe(stream_id, after_seq), after_seq):
            yield env

    async def info(self, stream_id: str) -> StreamInfo | None:
        try:
            stream = self._live(stream_id)
        except StreamNotFound:
            return None
        return StreamInfo(
            stream_id=stream_id,
            owner=stream.owner,
            session_id=stream.session_id,
            finished=stream.finished,
            last_seq=stream.last_seq,
            locale=stream.locale,
        )

    def is_local(self, stream_id: str) -> bool:
        """Is this stream generated in this process? (for the Redis log)"""
        return stream_id in self._streams

    def stream(self, stream_id: str) -> HeldStream | None:
        """One stream kept here and not expired (for the Redis log's rewrites)."""
        stream = self._streams.get(stream_id)
        return stream if stream is not None and stream.expires_at > time.monotonic() else None

    def held(self) -> list[tuple[str, HeldStream]]:
        """The streams kept here and not expired: what the Redis log renews the lease of and
        writes again to Redis when Redis lost them."""
        now = time.monotonic()
        return [(sid, s) for sid, s in self._streams.items() if s.expires_at > now]

    def release_readers(self) -> None:
        self.released = True
        for stream in self._streams.values():
            wake_all(stream.waiters)
            for sub in tuple(stream.pushers):
                sub.close()

    async def has_remote_readers(self, stream_id: str) -> bool:
        return False

    async def request_cancel(self, stream_id: str) -> bool:
        return False

    def on_cancel_request(self, callback: Callable[[str], Awaitable[object]]) -> None:
        return None

    async def aclose(self) -> None:
        self._streams.clear()

    def _live(self, stream_id: str) -> _MemoryStream:
        stream = self._streams.get(stream_id)
        if stream is None or stream.expires_at <= time.monotonic():
            raise not_found(stream_id)
        return stream

    def _sweep(self) -> None:
        """Forget expired streams; runs at most once a second, on create."""
        now = time.monotonic()
        if now - self._last_sweep < 1.0:
            return
        self._last_sweep = now
        expired = [sid for sid, s in self._streams.items() if s.expires_at <= now]
        for sid in expired:
            del self._streams[sid]

    async def snapshot(self, stream_id: str) -> list[Envelope]:
        stream = self._streams.get(stream_id)
        return [] if stream is None else stream.envelopes(0)


class PumpSubscription:
    """A subscription fed by an async iterator (a remote read), through one pump task.

    The buffer holds what the source yielded, in order; its seqs increase but need not be
    consecutive, and the last one may be a reader's own terminal event (`READER_SEQ`), which
    counts as after every other. `take` finds its place by bisection. A source that fails
    ends with a terminal `error` of its own (never an exception out of `take`), so a response
    always ends with exactly one terminal event."""

    def __init__(self, source: AsyncIterator[Envelope], after_seq: int) -> None:
        self._buffer: list[Envelope] = []
        self._ended = False
        self._fut: asyncio.Future[None] | None = None
        self._task = asyncio.create_task(self._pump(source))

    async def _pump(self, source: AsyncIterator[Envelope]) -> None:
        try:
            async for env in source:
                self._buffer.append(env)
                self.wake()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            err = exc if isinstance(exc, TokenRelayError) else internal_error(exc)
            self._buffer.append(reader_error(err))
        finally:
            self._ended = True
            self.wake()

    def take(self, after_seq: int) -> list[Envelope]:
        buffer = self._buffer
        if not buffer:
            return []
        if _order(buffer[0]) > after_seq:  # all of it: the first take
            return buffer[:]
        return buffer[bisect_right(buffer, float(after_seq), key=_order) :]

    def pairs(self, after_seq: int, count: int) -> list[str]:
        return [part for env in self.take(after_seq)[:count] for part in (env.type, env.data)]

    @property
    def done(self) -> bool:
        return self._ended

    def waiter(self) -> asyncio.Future[None]:
        if self._fut is None or self._fut.done():
            self._fut = asyncio.get_running_loop().create_future()
            if self._ended:
                self._fut.set_result(None)
        return self._fut

    def wake(self) -> None:
        if self._fut is not None and not self._fut.done():
            self._fut.set_result(None)

    def set_push(self, push: Callable[[int, str], bool] | None) -> None:
        return None  # a remote read wakes its reader for every event

    def close(self) -> None:
        cancel_for_good(self._task)  # a remote read may lose one cancel (streams/tasks.py)
        self.wake()


def _order(env: Envelope) -> float:
    """Where an envelope sorts in a reader's buffer: by seq, a reader's own last."""
    return env.seq or math.inf
