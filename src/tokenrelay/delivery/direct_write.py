"""uvicorn's own transport, for SSE body chunks written between two event-loop turns.

Why: a token that reaches a reader which is waiting for it used to cost a future, a task
wake-up, the reader's loop and an ASGI `send` coroutine before the socket write. With this
the log hands the token to the reader's `push` (delivery/flush.py) at once; the reader encodes it
and a callback writes what gathered in this loop turn as one chunk. That is the step the relay
benchmark's paced CPU per event was spent on beyond the naive app's (docs/benchmarks.md).

It is a bypass of uvicorn's `send`, so it is narrow: only uvicorn's httptools protocol (whose
`RequestResponseCycle` keeps `transport`, `flow`, `disconnected` and `chunked_encoding`),
only chunked responses, and only while the connection is writable (`flow.write_paused` is
uvicorn's back-pressure; when it is set the reader goes back to awaiting `send`, which
drains). Everything else — the response start, the terminal event, the end of the body,
heartbeats, any other server — goes through ASGI as before. A test checks that the bypass is
taken under uvicorn, so an upgrade that changes these attributes fails loudly, not slowly.
"""

from __future__ import annotations

import asyncio
import fcntl
import sys
import termios
import time
from collections.abc import Callable
from typing import Any

from starlette.types import Send

from tokenrelay.streams import timers

HTTPTOOLS_CYCLE = "uvicorn.protocols.http.httptools_impl"


class DirectWriter:
    """Writes chunks of one chunked response on uvicorn's transport. The SSE response's
    pusher (delivery/flush.py) is one, which reads these attributes itself on its hot path."""

    __slots__ = ("_cycle", "_flow", "_transport")

    def __init__(self, cycle: Any) -> None:
        self._cycle = cycle
        self._transport = cycle.transport
        self._flow = cycle.flow

    @property
    def cycle(self) -> Any:
        """uvicorn's `RequestResponseCycle` of the response."""
        return self._cycle

    @property
    def writable(self) -> bool:
        cycle = self._cycle
        return not (cycle.disconnected or cycle.response_complete or self._flow.write_paused)

    def write(self, body: bytes) -> bool:
        """One chunk of the chunked body; False when the connection is gone or complete."""
        cycle = self._cycle
        if cycle.disconnected or cycle.response_complete:
            return False
        self._transport.write(b"%x\r\n%b\r\n" % (len(body), body))
        return True

    # -- back-pressure (slow readers): never on the hot path, only once writes are paused

    @property
    def write_paused(self) -> bool:
        """uvicorn's flow control: the transport's buffer went over its high-water mark."""
        return bool(self._flow.write_paused)

    @property
    def lost(self) -> bool:
        return bool(self._cycle.disconnected)

    def buffered(self) -> int:
        """Bytes written and not yet taken by the kernel (the transport's own buffer); 0 for a
        transport that cannot tell (the ABC's default raises NotImplementedError)."""
        try:
            return int(self._transport.get_write_buffer_size())
        except (NotImplementedError, AttributeError):
            return 0

    def socket_fd(self) -> int | None:
        sock = self._transport.get_extra_info("socket")
        try:
            return int(sock.fileno()) if sock is not None else None
        except (AttributeError, OSError, ValueError):
            return None

    async def drain(self) -> None:
        """Until the transport takes writes again, or the connection is lost (uvicorn's
        `connection_lost` resumes writing)."""
        await self._flow.drain()

    def abort(self) -> None:
        """Close the connection now, dropping what it has not sent (`close()` would first
        wait for the buffer to drain, which a stalled client never lets happen)."""
        self._transport.abort()


_OUTQ = getattr(termios, "TIOCOUTQ", None)  # Linux: bytes in a socket's send queue


def kernel_unsent(fd: int | None) -> int:
    """Bytes the kernel holds for the socket `fd` that the peer has not acknowledged (0 where
    that cannot be known): the socket's own buffer, which a client that reads empties."""
    if fd is None or _OUTQ is None:
        return 0
    try:
        return int.from_bytes(fcntl.ioctl(fd, _OUTQ, b"\0\0\0\0"), sys.byteorder, signed=True)
    except OSError:
        return 0


class WriteWatch:
    """Closes a connection that does not drain: one whose unsent bytes stay put for
    `timeout_s`, or grow past `max_bytes` (`write_timeout_s`, `max_connection_buffer_bytes`).

    Armed by the reader when it finds the connection's writes paused, never per token: it
    looks at the connection every `interval` seconds on the coarse timers
    (streams/timers.py), and stops looking once the buffer is empty and writes flow. Progress
    is the unsent bytes shrinking (the transport's buffer and the kernel's send queue: a
    kernel send buffer grows to megabytes, and the transport's moves only once the kernel
    takes more) or the reader's position (`progress()`, the last event written) moving: a
    client that reads slowly but reads is never closed. A close is an abort (the
    client sees the connection end without a terminal event, and resumes with Last-Event-ID);
    uvicorn then reports the connection lost, which ends the reading as a disconnect does.
    It outlives the reading when the end of the body is still unsent: uvicorn's keep-alive
    close would wait for a stalled client forever.
    """

    __slots__ = (
        "_fd",
        "_interval",
        "_mark",
        "_max",
        "_on_close",
        "_progress",
        "_since",
        "_size",
        "_timeout",
        "_timer",
        "_writer",
        "closed",
    )

    def __init__(
        self,
        writer: DirectWriter,
        *,
        timeout_s: float,
        max_bytes: int,
        progress: Callable[[], int],
        on_close: Callable[[str], None],
    ) -> None:
        self._writer = writer
        self._fd = writer.socket_fd()
        self._timeout = timeout_s
        self._max = max_bytes
        # checked four times per timeout: a stall is closed within 1.25 x timeout_s
        self._interval = max(timers.COARSE_FROM, timeout_s / 4)
        self._progress = progress
        self._on_close = on_close
        self._timer: timers.Cancellable | None = None
        self._since = 0.0
        self._size = 0
        self._mark = 0
        self.closed = False

    def arm(self) -> bool:
        """Watch from now (if not already); True if the connection was closed (over the
        buffer bound)."""
        if self.closed or self._over():
            return self.closed
        if self._timer is None:
            self._since = time.monotonic()
            self._size = self._writer.buffered() + kernel_unsent(self._fd)
            self._mark = self._progress()
            self._timer = timers.call_later(self._interval, self._check)
        return False

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _over(self) -> bool:
        if self._writer.buffered() > self._max:
            self._close("buffer")
            return True
        return False

    def _check(self) -> None:
        self._timer = None
        writer = self._writer
        if self.closed or writer.lost or self._over():
            return
        size = writer.buffered()
        if size == 0 and not writer.write_paused:
            return  # drained: armed again at the next pause
        size += kernel_unsent(self._fd)
        mark = self._progress()
        now = time.monotonic()
        if size < self._size or mark != self._mark:
            self._since = now  # it moves, however slowly
        elif now - self._since >= self._timeout:
            self._close("timeout")
            return
        self._size, self._mark = size, mark
        self._timer = timers.call_later(self._interval, self._check)

    def _close(self, reason: str) -> None:
        self.closed = True
        self.cancel()
        self._on_close(reason)
        self._writer.abort()


def _cycle(send: Send) -> Any:
    """uvicorn's httptools `RequestResponseCycle` behind `send`, or None."""
    cycle: Any = getattr(send, "__self__", None)
    return cycle if type(cycle).__module__ == HTTPTOOLS_CYCLE else None


def direct_writer(send: Send) -> DirectWriter | None:
    """A writer for `send`'s connection once the response has started, or None."""
    cycle = _cycle(send)
    if cycle is None:
        return None
    needed = ("transport", "flow", "disconnected", "response_complete", "chunked_encoding")
    if not all(hasattr(cycle, name) for name in needed) or cycle.chunked_encoding is not True:
        return None
    return DirectWriter(cycle)


class _NotifyingEvent:
    """Stands in for uvicorn's per-request `message_event` (an `asyncio.Event`): the same
    `set`, `clear`, `is_set` and `wait`, and it also calls back when it is set, until
    `forget` is called.

    Its own class, not an `asyncio.Event` subclass: an Event makes a deque for its waiters
    that an idle stream holds for nothing, while at most a stray `receive()` waits here (a
    list of them, made when needed; what that saves per idle stream: docs/benchmarks.md)."""

    __slots__ = ("_callback", "_value", "_waiters")

    def __init__(self, callback: Callable[[], None]) -> None:
        self._value = False
        self._waiters: list[asyncio.Future[None]] | None = None
        self._callback: Callable[[], None] | None = callback

    def is_set(self) -> bool:
        return self._value

    def set(self) -> None:
        if not self._value:
            self._value = True
            for waiter in self._waiters or ():
                if not waiter.done():
                    waiter.set_result(None)
        if self._callback is not None:
            self._callback()

    def clear(self) -> None:
        self._value = False

    async def wait(self) -> bool:
        if self._value:
            return True
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        try:
            await waiter
            return True
        finally:
            self._waiters.remove(waiter)

    def forget(self) -> None:
        self._callback = None


def watch_disconnect(send: Send, gone: Callable[[], None]) -> Callable[[], None] | None:
    """Call `gone()` when the client of `send`'s connection goes away, until the returned
    function is called; None when this server is not one we can watch (then the caller
    listens on `receive` instead).

    Why: the other way to hear of a disconnect is a task that waits on `receive()` for the
    whole stream, a task and three coroutine frames held by each open stream (a good part of
    the memory per idle stream, docs/benchmarks.md). uvicorn's httptools protocol
    sets the request's `message_event` when the connection is lost (and when the response
    completes or more body arrives, which `gone` is not called for); here that event also
    calls back. Only for a request whose body has been read: nothing else waits on it then.

    The caller must call the returned function when it stops listening: the callback refers
    to the caller (a reading) and the request's cycle refers to the callback, a reference
    cycle that only the garbage collector would otherwise free, with the connection, the
    reading and what they hold (docs/benchmarks.md).
    """
    cycle = _cycle(send)
    if cycle is None or not all(
        hasattr(cycle, name) for name in ("message_event", "disconnected", "flow")
    ):
        return None

    def on_set() -> None:
        if cycle.disconnected:
            gone()

    event = _NotifyingEvent(on_set)
    cycle.message_event = event
    cycle.flow.resume_reading()  # as `receive()` does: reading must go on to see the end
    if cycle.disconnected:
        gone()
    return event.forget
