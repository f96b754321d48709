"""The stream log: every event of a stream, numbered from 1, readable from any position.

`StreamLog` is the protocol; `MemoryStreamLog` keeps streams in this process (the embedded
default). A reader replays what it missed and then follows live events until the terminal one.
Finished streams stay readable for `ttl_s`, then they are forgotten.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from tokenrelay.errors import StreamNotFound
from tokenrelay.events import Envelope, envelope


@dataclass(frozen=True, slots=True)
class StreamInfo:
    stream_id: str
    owner: str | None
    session_id: str | None
    finished: bool
    last_seq: int


class StreamLog(Protocol):
    async def create(
        self, stream_id: str, *, owner: str | None, session_id: str | None
    ) -> None: ...

    async def append(self, stream_id: str, event: object) -> Envelope:
        """Number and store one event (a wire event model); returns its envelope."""
        ...

    def read(self, stream_id: str, after_seq: int = 0) -> AsyncIterator[Envelope]:
        """Events with seq > after_seq, then live ones, until the terminal event."""
        ...

    async def info(self, stream_id: str) -> StreamInfo | None: ...

    def is_local(self, stream_id: str) -> bool:
        """Is this stream generated in this process?"""
        ...

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


def not_found(stream_id: str) -> StreamNotFound:
    return StreamNotFound(
        f"stream {stream_id!r} is unknown or has expired",
        suggestion="start a new request; finished streams stay resumable for stream_ttl_s seconds",
    )


@dataclass(slots=True)
class _MemoryStream:
    owner: str | None
    session_id: str | None
    entries: list[Envelope] = field(default_factory=list)
    finished: bool = False
    expires_at: float = float("inf")
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class MemoryStreamLog:
    """In-process log. Appends are O(1); readers wait on one event per stream."""

    def __init__(self, ttl_s: float = 300.0) -> None:
        self._ttl_s = ttl_s
        self._streams: dict[str, _MemoryStream] = {}
        self._last_sweep = time.monotonic()
        self._released = False

    def __len__(self) -> int:
        return len(self._streams)

    async def create(self, stream_id: str, *, owner: str | None, session_id: str | None) -> None:
        self._sweep()
        self._streams[stream_id] = _MemoryStream(owner=owner, session_id=session_id)

    async def append(self, stream_id: str, event: object) -> Envelope:
        stream = self._streams.get(stream_id)
        if stream is None or stream.finished:
            raise not_found(stream_id)
        env = envelope(len(stream.entries) + 1, event)  # type: ignore[arg-type]
        stream.entries.append(env)
        if env.terminal:
            stream.finished = True
            stream.expires_at = time.monotonic() + self._ttl_s
        changed, stream.changed = stream.changed, asyncio.Event()
        changed.set()
        return env

    async def read(self, stream_id: str, after_seq: int = 0) -> AsyncIterator[Envelope]:
        stream = self._live(stream_id)
        index = max(0, after_seq)
        while True:
            entries = stream.entries
            while index < len(entries):
                env = entries[index]
                index += 1
                yield env
                if env.terminal:
                    return
            if stream.finished or self._released:
                return
            await stream.changed.wait()

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
            last_seq=len(stream.entries),
        )

    def is_local(self, stream_id: str) -> bool:
        return stream_id in self._streams

    def release_readers(self) -> None:
        self._released = True
        for stream in self._streams.values():
            stream.changed.set()

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
