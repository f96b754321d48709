"""The SSE response: reads a stream from the log and sends it, from any position.

Why not sse-starlette here: it was our first choice, and the relay benchmark showed it costs
the most in the hot path (docs/benchmarks.md): an anyio task group of four tasks per
response and a cancel scope per send. This response does the same job with one coroutine
per response:

- frames are pre-encoded bytes (`encode_sse`); whatever is in the log when the reader wakes is
  sent in one write;
- the reader sleeps on a future that the log resolves on the next event, that a timer resolves
  every `heartbeat_s` to send a `: ping` comment (from the first byte on), and that is
  resolved when the client disconnects: under uvicorn by the connection's own event
  (`direct_write.watch_disconnect`), elsewhere by a listener task awaiting `http.disconnect`;
- while it sleeps, under uvicorn, the log pushes it the next events instead (`_Pusher`): one
  callback per loop turn writes them on uvicorn's transport (server/direct_write.py); the
  terminal event, heartbeats and anything under back-pressure wake the reader as above;
- body chunks skip the middleware chain, which has seen the response start
  (`app.TokenRelayAPI`);
- when the reader leaves before the terminal event the runner hears of it (`detach`), which is
  how a disconnect reaches the provider;
- a slow reader is bounded: a backlog goes out in slices of at most `SLICE_BYTES` (a push, of
  at most `PUSH_MAX_EVENTS`), each written only once the connection takes writes again, and
  a connection that stops draining for `write_timeout_s`, or holds more than
  `max_connection_buffer_bytes` unsent, is closed (`direct_write.WriteWatch`); the client
  resumes with Last-Event-ID;
- an open reading holds a slot of `max_open_streams` (`ReaderSlots`): the first reading of a
  stream running here shares the stream's slot, every other reading has one of its own.

The native endpoints send our own frames (`id:`, `event:`, `data:`). Another wire format of
the same events, such as OpenAI's chunks on `/v1/chat/completions`, comes as a `Framer`: the
same reader, pushes, pings and disconnects, with the framer's bytes for each batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Awaitable, Callable, Sequence
from operator import attrgetter
from typing import Protocol

from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from tokenrelay.errors import StreamNotFound
from tokenrelay.events import PING_FRAME, TERMINAL_TYPES, Envelope, encode_frames, encode_sse
from tokenrelay.server.asgi import HANDOFF, RAW_SEND
from tokenrelay.server.direct_write import (
    DirectWriter,
    WriteWatch,
    direct_writer,
    watch_disconnect,
)
from tokenrelay.services import Services
from tokenrelay.streams import timers
from tokenrelay.streams.log import Subscription
from tokenrelay.streams.runner import StreamRunner

logger = logging.getLogger("tokenrelay.sse")

# A backlog (a resume, or a reader that woke after a while) goes out in slices of about this
# many bytes of event data, at most SLICE_EVENTS events, each once the connection takes
# writes: one wake-up never encodes a whole stream as one chunk (a 1 MB answer was one write
# of 3 MB of frames, held by a client that does not read).
SLICE_BYTES = 64 * 1024
SLICE_EVENTS = 512
# what one push flush writes at most; the rest is the reader's, in slices (a provider that
# yields thousands of tokens in one loop turn made one chunk of them all)
PUSH_MAX_EVENTS = 256

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
SSE_RAW_HEADERS = [
    *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in SSE_HEADERS.items()),
    (b"content-type", b"text/event-stream; charset=utf-8"),
]


class Framer(Protocol):
    """A wire format of our events other than the native frames."""

    def frames(self, events: Sequence[Envelope]) -> bytes:
        """The body bytes for a batch of events, in order (may be empty). A batch that ends
        with the terminal event gets whatever the format ends a stream with."""
        ...


class ReaderSlots:
    """The open readings of one app that hold a slot of `max_open_streams` of their own.

    The open-streams count is `runner.active + count`: a stream running here holds one slot,
    which its first reading here shares (`riders`); every other reading holds one while it
    is open (a resume of a finished stream, a second reader of a stream, a reading of a
    stream that runs on another replica). A riding reading whose stream has finished takes
    a slot of its own when it notices: when its connection backs up (the case of a client
    that does not read) and at each look of its `WriteWatch` after that (a quarter of
    `write_timeout_s` apart); a reading that keeps up reads the end and leaves.
    """

    __slots__ = ("count", "riders")

    def __init__(self) -> None:
        self.count = 0
        self.riders: set[str] = set()


_reader_slots: weakref.WeakKeyDictionary[StreamRunner, ReaderSlots] = weakref.WeakKeyDictionary()


def reader_slots(runner: StreamRunner) -> ReaderSlots:
    """The reader slots of the app whose runner this is (made on first use)."""
    slots = _reader_slots.get(runner)
    if slots is None:
        slots = _reader_slots[runner] = ReaderSlots()
    return slots


def open_streams(runner: StreamRunner) -> int:
    """What `max_open_streams` counts: running streams, and readings with a slot of their own."""
    slots = _reader_slots.get(runner)
    return runner.active + (slots.count if slots is not None else 0)


class EventStreamResponse(Response):
    media_type = "text/event-stream"

    def __init__(
        self,
        services: Services,
        stream_id: str,
        *,
        after_seq: int = 0,
        event_names: bool = True,
        trace_id: str | None = None,
        framer: Framer | None = None,
    ) -> None:
        self.status_code = 200
        self.background = None
        # built once for every response (Starlette's init_headers made ten objects each)
        self.raw_headers = (
            [*SSE_RAW_HEADERS, (b"x-trace-id", trace_id.encode("latin-1"))]
            if trace_id
            else list(SSE_RAW_HEADERS)  # a list of its own: middleware may add headers
        )
        self._services = services
        self.stream_id = stream_id
        self.after_seq = after_seq
        self.event_names = event_names
        self.framer = framer
        # called once when the reading ends (or never starts): a per-client reading slot
        # (`limits.reading_slot`) goes back
        self.on_close: Callable[[], Awaitable[None]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        reading = await self.open(scope, receive, send)
        if reading is None:
            return
        if HANDOFF in scope:  # the outermost layer follows the stream (app.TokenRelayAPI)
            scope[HANDOFF] = reading
            return
        await reading.follow()

    async def open(self, scope: Scope, receive: Receive, send: Send) -> StreamReading | None:
        """Subscribe and send the response start; None if the stream is gone (answered)."""
        services = self._services
        try:
            sub = await services.log.subscribe(self.stream_id, self.after_seq)
        except StreamNotFound as exc:  # expired between the route's check and now
            if self.on_close is not None:
                await self.on_close()
            await JSONResponse(exc.to_dict(), status_code=exc.http_status)(scope, receive, send)
            return None
        # the middleware chain sees the start; body chunks skip it (app.TokenRelayAPI), and
        # so does the end when nothing of the chain is left to see it (HANDOFF)
        body_send: Send = scope.get(RAW_SEND, send)
        reading = StreamReading(
            self, services, sub, body_send, body_send if HANDOFF in scope else send
        )
        reading.unwatch = watch_disconnect(body_send, reading.gone)
        if reading.unwatch is None:
            reading.listener = asyncio.create_task(self._listen(receive, reading.gone))
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        except BaseException:
            reading.abandon()
            raise
        return reading

    @staticmethod
    async def _listen(receive: Receive, gone: Callable[[], None]) -> None:
        """Wait for the client to go away (servers `watch_disconnect` cannot watch)."""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                gone()
                return


class StreamReading:
    """One response's reading of its stream, from the response start to the end.

    Its own object, not locals of the response's call, so that the end can be followed from
    the outermost layer once every middleware between has returned (`HANDOFF`): an idle open
    stream then holds no frame of theirs, which kept the young collections short under load
    (docs/benchmarks.md).
    """

    __slots__ = (
        "_after",
        "_body_send",
        "_end_send",
        "_finished",
        "_framer",
        "_gone",
        "_left",
        "_names",
        "_ping_due",
        "_pusher",
        "_riding",
        "_sent",
        "_services",
        "_slot",
        "_slots",
        "_stream_id",
        "_sub",
        "_timer",
        "_watch",
        "listener",
        "on_close",
        "unwatch",
    )

    def __init__(
        self,
        response: EventStreamResponse,
        services: Services,
        sub: Subscription,
        body_send: Send,
        end_send: Send,
    ) -> None:
        # what it needs of the response, not the response (its headers are sent)
        self._stream_id = response.stream_id
        self._after = response.after_seq
        self._names = response.event_names
        self._framer = response.framer
        self._services = services
        self._sub = sub
        self._body_send = body_send
        self._end_send = end_send
        self._gone = False
        self._ping_due = False
        self._finished = False
        self._left = False
        self.listener: asyncio.Task[None] | None = None
        self.unwatch: Callable[[], None] | None = None  # from `watch_disconnect`
        self.on_close = response.on_close
        self._pusher: _Pusher | None = None
        self._watch: WriteWatch | None = None
        self._sent = self._after  # the last seq the reader itself wrote
        runner = services.runner
        runner.attach(self._stream_id)
        # the slot it holds (`ReaderSlots`): the stream's, or one of its own
        slots = self._slots = reader_slots(runner)
        self._riding = runner.is_running(self._stream_id) and self._stream_id not in slots.riders
        self._slot = not self._riding
        if self._riding:
            slots.riders.add(self._stream_id)
        else:
            slots.count += 1
        self._timer = timers.call_later(services.settings.heartbeat_s, self._ping)

    def _position(self) -> int:
        """The last event written (by the reader or its pusher): a stalled connection's
        progress (`WriteWatch`). Also where a riding reading of a stream that has finished
        takes a slot of its own (`ReaderSlots`): the watch asks this of backed-up readers."""
        if self._riding and not self._services.runner.is_running(self._stream_id):
            self._riding = False
            self._slots.riders.discard(self._stream_id)
            self._slot = True
            self._slots.count += 1
        pusher = self._pusher
        return self._sent if pusher is None else max(self._sent, pusher.after)

    def _closed_slow(self, reason: str) -> None:
        settings = self._services.settings
        if reason == "timeout":
            why = f"its socket has not drained for {settings.write_timeout_s:g} s"
        else:
            why = f"it holds over {settings.max_connection_buffer_bytes} unsent bytes"
        logger.warning(
            "closed a slow reader of stream %s at event %s: %s (the client can resume with"
            " Last-Event-ID; see write_timeout_s and max_connection_buffer_bytes)",
            self._stream_id,
            self._position(),
            why,
        )

    async def _drain(self, writer: DirectWriter) -> None:
        """Wait until the connection takes writes again, watched (`WriteWatch`): closed if
        it stays stalled past `write_timeout_s` or holds too much."""
        watch = self._watch
        if watch is None:
            settings = self._services.settings
            watch = self._watch = WriteWatch(
                writer,
                timeout_s=settings.write_timeout_s,
                max_bytes=settings.max_connection_buffer_bytes,
                progress=self._position,
                on_close=self._closed_slow,
            )
        watch.arm()  # a close (over the bound, now or later) ends the drain: uvicorn's
        await writer.drain()  # `connection_lost` resumes writing and reports the disconnect

    def _ping(self) -> None:
        self._ping_due = True
        self._sub.wake()

    def gone(self) -> None:
        self._gone = True
        self._sub.wake()

    async def follow(self) -> None:
        """Send the stream until its terminal event, the client leaving, or a release."""
        try:
            sub, body_send = self._sub, self._body_send
            writer = direct_writer(body_send)
            pusher: _Pusher | None = None
            after = self._after
            framer = self._framer
            # the native first frame tells the client when to retry
            retry = self._services.settings.retry_ms if framer is None else None
            stream_id, names = self._stream_id, self._names
            while not self._gone:
                if writer is not None and writer.write_paused:
                    # backed up: nothing more is encoded until the socket drains (or the
                    # connection is closed for not draining, which ends the loop as gone)
                    await self._drain(writer)
                    continue
                batch = sub.take(after)
                if batch:
                    if len(batch) > 1:
                        cut = _slice_end(batch)
                        if cut < len(batch):
                            batch = batch[:cut]
                    # nothing follows a terminal event in a log: only the last can be one
                    self._finished = batch[-1].type in TERMINAL_TYPES
                    if framer is not None:
                        body = framer.frames(batch)
                    elif retry is not None:
                        body = encode_sse(
                            stream_id, batch[0], event_names=names, retry_ms=retry
                        ) + encode_frames(stream_id, batch[1:], event_names=names)
                        retry = None
                    else:
                        body = encode_frames(stream_id, batch, event_names=names)
                    after = batch[-1].seq
                    del batch  # not held while the reader waits
                    if self._finished:  # the last frames and the end of the body, one write
                        await self._end_send(
                            {"type": "http.response.body", "body": body, "more_body": False}
                        )
                        self._sent = after
                        if writer is not None and writer.buffered():
                            await self._drain(writer)  # watched until the client has it all
                        return
                    if body:
                        await body_send(
                            {"type": "http.response.body", "body": body, "more_body": True}
                        )
                    self._sent = after
                    del body
                    continue
                if sub.done:
                    break
                if writer is not None and retry is None:
                    if pusher is None:
                        pusher = self._pusher = _Pusher(
                            writer, sub, stream_id, names, framer, flush_queue()
                        )
                    pusher.after = pusher.until = after
                    sub.set_push(pusher.push)
                await sub.waiter()
                if pusher is not None:  # what the log pushed while we waited goes out first
                    sub.set_push(None)
                    pusher.flush()
                    after = pusher.after
                if self._ping_due and not self._gone:
                    self._ping_due = False
                    if writer is None or not writer.write_paused:  # else: backed up, no ping
                        await body_send(
                            {"type": "http.response.body", "body": PING_FRAME, "more_body": True}
                        )
                    heartbeat = self._services.settings.heartbeat_s
                    self._timer = timers.call_later(heartbeat, self._ping)
            if not self._gone:
                end = {"type": "http.response.body", "body": b"", "more_body": False}
                await self._end_send(end)
        except OSError:
            self._gone = True  # servers that raise on a closed connection
        finally:
            self.abandon()
            listener = self.listener
            if listener is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await listener

    def abandon(self) -> None:
        """Let go of the stream (once): no more pings, the runner hears the reader left."""
        if self._left:
            return
        self._left = True
        self._timer.cancel()
        self._sub.close()
        slots = self._slots
        if self._slot:
            slots.count -= 1
        elif self._riding:
            slots.riders.discard(self._stream_id)
        self._slot = self._riding = False
        # the watch, if any, goes on until the connection has drained or is closed (it holds
        # this reading until then); dropped here, so the two are no reference cycle
        self._watch = None
        if self.unwatch is not None:  # the connection lets go of this reading
            self.unwatch()
            self.unwatch = None
        if self.listener is not None:
            self.listener.cancel()
        self._services.runner.detach(self._stream_id, finished=self._finished)
        if self.on_close is not None:
            task = asyncio.get_running_loop().create_task(_call(self.on_close))
            _closing.add(task)
            task.add_done_callback(_closing.discard)
            self.on_close = None


_closing: set[asyncio.Task[None]] = set()  # `on_close` calls under way (held until done)


async def _call(on_close: Callable[[], Awaitable[None]]) -> None:
    """A reading's `on_close`, after it has ended: a failure is logged, never raised."""
    try:
        await on_close()
    except Exception:
        logger.warning("giving back a reading's slot failed", exc_info=True)


class _FlushQueue:
    """The pushers with something to write, flushed by one callback per loop turn for all of
    them, instead of a callback per stream per turn: with many paced streams, the tokens of
    hundreds of streams fall due in the same turn, and each callback was a handle made,
    queued and run for one token (docs/benchmarks.md). A pusher appends itself
    to `pending` and calls `start()` first when it finds the list empty.

    It keeps no reference to its loop: `_queues` holds it under a weak reference to the loop,
    and a value that referred to its key would keep every closed loop alive."""

    __slots__ = ("pending",)

    def __init__(self) -> None:
        self.pending: list[_Pusher] = []

    def start(self) -> None:
        asyncio.get_running_loop().call_soon(self._run)

    def _run(self) -> None:
        batch = self.pending[:]
        self.pending.clear()  # the list itself stays: pushers hold it
        for pusher in batch:
            try:
                pusher.flush()
            except Exception as exc:  # as the loop treats a failing callback: report, go on
                asyncio.get_running_loop().call_exception_handler(
                    {"message": "SSE flush failed", "exception": exc}
                )


_queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _FlushQueue] = (
    weakref.WeakKeyDictionary()
)


def flush_queue() -> _FlushQueue:
    """The running loop's flush queue (made on first use; it goes with its loop)."""
    loop = asyncio.get_running_loop()
    queue = _queues.get(loop)
    if queue is None:
        queue = _queues[loop] = _FlushQueue()
    return queue


class _Pusher(DirectWriter):
    """Takes a waiting reader's events from the log as they are appended (`set_push`): each
    push only notes the event, and the loop's flush queue encodes and writes, once per loop
    turn, what came in that turn as one chunk. It refuses the terminal event, and everything
    while the connection is not writable: the reader wakes and sends those.

    A `DirectWriter` itself, so that `push` and `flush` read the connection's state as
    `writable` and `write` do, without a call of either: both run once per token."""

    __slots__ = (
        "_framer",
        "_names",
        "_pending",
        "_queue",
        "_scheduled",
        "_stream_id",
        "_sub",
        "after",
        "until",
    )

    def __init__(
        self,
        writer: DirectWriter,
        sub: Subscription,
        stream_id: str,
        names: bool,
        framer: Framer | None,
        queue: _FlushQueue,
    ) -> None:
        super().__init__(writer.cycle)
        self._sub = sub
        self._stream_id = stream_id
        self._names = names
        self._framer = framer
        self._queue = queue
        self._pending = queue.pending
        self._scheduled = False
        self.after = 0  # the last seq written
        self.until = 0  # the last seq taken (written, or to be written by the next flush)

    def push(self, seq: int, kind: str) -> bool:
        if kind in TERMINAL_TYPES:
            return False
        if not self._scheduled:
            cycle = self._cycle  # `writable`, inline
            if cycle.disconnected or cycle.response_complete or self._flow.write_paused:
                return False
            self._scheduled = True
            pending = self._pending
            if not pending:
                self._queue.start()
            pending.append(self)
        self.until = seq
        return True

    def flush(self) -> None:
        self._scheduled = False
        count = self.until - self.after
        if count <= 0:
            return
        if count > PUSH_MAX_EVENTS:  # a whole backlog in one turn: the reader slices it
            count = PUSH_MAX_EVENTS
            self.until = self.after + count
            self._sub.close()  # out of push mode; the reader wakes and takes the rest
        # `count`: not the terminal event, if it came meanwhile
        framer = self._framer
        if framer is None:
            body = self._sub.frames(self.after, count, self._stream_id, event_names=self._names)
        else:
            body = framer.frames(self._sub.take(self.after)[:count])
        self.after = self.until
        cycle = self._cycle  # `write`, inline
        if body and not (cycle.disconnected or cycle.response_complete):
            self._transport.write(b"%x\r\n%b\r\n" % (len(body), body))


_data = attrgetter("data")


def _slice_end(batch: Sequence[Envelope]) -> int:
    """How many of `batch`'s events go in one write: up to about `SLICE_BYTES` of event
    data and `SLICE_EVENTS` events, and at least one."""
    end = min(len(batch), SLICE_EVENTS)
    if sum(map(len, map(_data, batch[:end]))) < SLICE_BYTES:
        return end  # the common case, counted without a Python step per event
    size = 0
    for i in range(end):
        size += len(batch[i].data)
        if size >= SLICE_BYTES:
            return i + 1
    return end


def stream_response(
    services: Services,
    stream_id: str,
    *,
    after_seq: int = 0,
    event_names: bool = True,
    trace_id: str | None = None,
) -> EventStreamResponse:
    return EventStreamResponse(
        services, stream_id, after_seq=after_seq, event_names=event_names, trace_id=trace_id
    )
