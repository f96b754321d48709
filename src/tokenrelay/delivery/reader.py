"""The reader: one client's reading of one stream, from any position to its terminal event.

A `Reader` attaches itself to the stream when it is made and detaches itself when it ends, however
it ends (`Attachment`): that is how the runner knows a stream still has a reader, and how a
disconnect reaches the provider after the grace period. It takes events from the log's
subscription, has its encoder make bytes of them, and writes them to its sink:

- a backlog (a resume, or a reader that woke after a while) in slices of at most `SLICE_BYTES`
  of event data and `SLICE_EVENTS` events, each once the connection takes writes;
- while it waits, on a direct sink, the log pushes it the next events instead, written per
  loop turn (`delivery/flush.py`); the terminal event, heartbeats and anything under
  back-pressure wake the reader;
- a heartbeat (`Encoder.ping`) every `heartbeat_s`, from a coarse timer;
- a slow reader is bounded: a connection that stops draining for `write_timeout_s`, or holds
  more than `max_connection_buffer_bytes` unsent, is closed (`direct_write.WriteWatch`); the
  client resumes with Last-Event-ID;
- an open reading holds a slot of `max_open_streams` (`ReaderSlots`);
- the response start is its first step (`starter`); a new stream's start may be held until
  its first event but `metadata`, for up to `start_wait_s`, so that an `error` known before
  any output is answered as the HTTP error of its code. The hold is the loop's own wait, on
  the heartbeat's timer: a stream whose model has not begun holds nothing more for it.

Collectors that want the events rather than bytes (the JSON endpoints) use `read_events`,
which attaches and detaches the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from operator import attrgetter

from tokenrelay.delivery.direct_write import DirectWriter, WriteWatch
from tokenrelay.delivery.encoders import Encoder
from tokenrelay.delivery.flush import Pusher, flush_queue
from tokenrelay.delivery.sinks import Sink
from tokenrelay.events import TERMINAL_TYPES, Envelope
from tokenrelay.services import Services
from tokenrelay.streams import timers
from tokenrelay.streams.log import StreamLog, Subscription
from tokenrelay.streams.runner import StreamRunner

logger = logging.getLogger("tokenrelay.sse")

# A backlog goes out in slices of about this many bytes of event data, at most SLICE_EVENTS
# events, each once the connection takes writes: one wake-up never encodes a whole stream as
# one chunk (a 1 MB answer was one write of 3 MB of frames, held by a client that does not read).
SLICE_BYTES = 64 * 1024
SLICE_EVENTS = 512


class Attachment:
    """A reader's presence on a stream, for its runner: attached when made, detached once."""

    __slots__ = ("_runner", "_stream_id", "finished")

    def __init__(self, runner: StreamRunner, stream_id: str) -> None:
        self._runner: StreamRunner | None = runner
        self._stream_id = stream_id
        self.finished = False  # the reader saw the terminal event
        runner.attach(stream_id)

    def detach(self) -> None:
        runner = self._runner
        if runner is not None:
            self._runner = None
            runner.detach(self._stream_id, finished=self.finished)


async def read_events(
    runner: StreamRunner, log: StreamLog, stream_id: str
) -> AsyncGenerator[Envelope, None]:
    """A stream's events until the terminal one, attached meanwhile: leaving early counts as
    a reader leaving (the runner cancels after the grace period)."""
    attachment = Attachment(runner, stream_id)
    try:
        async for env in log.read(stream_id):
            attachment.finished = env.terminal
            yield env
    finally:
        attachment.detach()


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


class Reader:
    """One response's reading of its stream, from the response start to the end.

    Its own object, not locals of the response's call, so that the end can be followed from
    the outermost layer once every middleware between has returned (server/front.py): an
    idle open stream then holds no frame of theirs, which kept the young collections short
    under load (docs/benchmarks.md).
    """

    __slots__ = (
        "_after",
        "_attachment",
        "_encoder",
        "_gone",
        "_holding",
        "_left",
        "_ping_due",
        "_pusher",
        "_riding",
        "_sent",
        "_services",
        "_sink",
        "_slot",
        "_slots",
        "_stream_id",
        "_sub",
        "_timer",
        "_watch",
        "listener",
        "on_close",
        "starter",
        "unwatch",
    )

    def __init__(
        self,
        services: Services,
        stream_id: str,
        sub: Subscription,
        sink: Sink,
        encoder: Encoder,
        *,
        after_seq: int = 0,
        on_close: Callable[[], Awaitable[None]] | None = None,
        start_wait_s: float = 0.0,
    ) -> None:
        self._stream_id = stream_id
        self._after = after_seq
        self._encoder = encoder
        self._services = services
        self._sub = sub
        self._sink = sink
        self._gone = False
        self._ping_due = False
        self._left = False
        self.listener: asyncio.Task[None] | None = None
        # the response start, the first thing `follow` does (the response's: server/sse.py):
        # called with None for the stream's own start, or with the stream's `error` when that
        # came before any output (then the response is that error, and nothing follows)
        self.starter: Callable[[Envelope | None], Awaitable[None]] | None = None
        # the start waits for the first event (or `start_wait_s`, on the heartbeat's timer)
        self._holding = start_wait_s > 0
        self.unwatch: Callable[[], None] | None = sink.watch_disconnect(self.gone)
        # called once when the reading ends: a per-client reading slot goes back
        self.on_close = on_close
        self._pusher: Pusher | None = None
        self._watch: WriteWatch | None = None
        self._sent = after_seq  # the last seq the reader itself wrote
        runner = services.runner
        self._attachment = Attachment(runner, stream_id)
        # the slot it holds (`ReaderSlots`): the stream's, or one of its own
        slots = self._slots = reader_slots(runner)
        self._riding = runner.is_running(stream_id) and stream_id not in slots.riders
        self._slot = not self._riding
        if self._riding:
            slots.riders.add(stream_id)
        else:
            slots.count += 1
        wait = start_wait_s if self._holding else services.settings.heartbeat_s
        self._timer = timers.call_later(wait, self._ping)

    @property
    def watched(self) -> bool:
        """Does the connection tell this reader of a disconnect by itself? (else the response
        listens on `receive` and calls `gone`)"""
        return self.unwatch is not None

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

    async def _start(self, error: Envelope | None) -> None:
        """The response start (or, with `error`, the whole response); then, unless an error
        answered, the heartbeat's timer and the direct sink."""
        if self._holding:
            self._holding = False
            self._ping_due = False
            self._timer.cancel()
            if error is None:
                self._timer = timers.call_later(self._services.settings.heartbeat_s, self._ping)
        starter = self.starter
        if starter is not None:
            # called from the slot, not kept in a local: the starter holds the middleware
            # chain's `send`, which the reading must not keep for the whole stream
            self.starter = None
            await starter(error)
        if error is None:
            self._sink.started()

    def _ping(self) -> None:
        self._ping_due = True
        self._sub.wake()

    def gone(self) -> None:
        self._gone = True
        self._sub.wake()

    async def follow(self) -> None:
        """Send the stream until its terminal event, the client leaving, or a release."""
        try:
            sub, sink, encoder = self._sub, self._sink, self._encoder
            if not self._holding:
                await self._start(None)
            writer = sink.writer
            pusher: Pusher | None = None
            after = peek = self._after
            while not self._gone:
                if self._holding:  # the start waits for the first event but `metadata`
                    # its type only (`pairs`): no envelopes of a backlog read again once started
                    kind = sub.pairs(peek, 1)
                    while kind and kind[0] == "metadata":
                        peek += 1
                        kind = sub.pairs(peek, 1)
                    if not kind and not (sub.done or self._ping_due):
                        await sub.waiter()
                        continue
                    if kind and kind[0] == "error":
                        self._attachment.finished = True
                        await self._start(sub.take(peek)[0])  # the answer is that error
                        return
                    del kind
                    await self._start(None)
                    writer = sink.writer
                    continue
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
                    finished = self._attachment.finished = batch[-1].type in TERMINAL_TYPES
                    body = encoder.frames(batch)
                    after = batch[-1].seq
                    del batch  # not held while the reader waits
                    if finished:  # the last frames and the end of the body, one write
                        await sink.close(body)
                        self._sent = after
                        if writer is not None and writer.buffered():
                            await self._drain(writer)  # watched until the client has it all
                        return
                    if body:
                        await sink.write(body)
                    self._sent = after
                    del body
                    continue
                if sub.done:
                    break
                if writer is not None and not encoder.fresh:
                    if pusher is None:
                        pusher = self._pusher = Pusher(writer, sub, encoder, flush_queue())
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
                        await sink.write(encoder.ping())
                    heartbeat = self._services.settings.heartbeat_s
                    self._timer = timers.call_later(heartbeat, self._ping)
            if self._holding:  # left while the start waited: a start, for the server's sake
                await self._start(None)
            if not self._gone:
                await sink.close()
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
        self._attachment.detach()
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
