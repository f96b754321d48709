"""Write batching per loop turn: what the log pushes to waiting readers goes out once a turn.

A reader that waits for its stream's next event, on a connection that can be written to
directly (`delivery/sinks.py`), lets the log push events to it (`Subscription.set_push`). Each
push only notes the event; one callback per loop turn (`FlushQueue`) then has every pushed
reader encode what came in that turn and write it as one chunk. Without this, a token cost a
future, a task wake-up, the reader's loop and an ASGI `send` coroutine (docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import weakref

from tokenrelay.delivery.direct_write import DirectWriter
from tokenrelay.delivery.encoders import Encoder
from tokenrelay.events import TERMINAL_TYPES
from tokenrelay.streams.log import Subscription

# what one flush writes at most; the rest is the reader's, in slices (a provider that yields
# thousands of tokens in one loop turn made one chunk of them all)
PUSH_MAX_EVENTS = 256


class FlushQueue:
    """The pushers with something to write, flushed by one callback per loop turn for all of
    them, instead of a callback per stream per turn: with many paced streams, the tokens of
    hundreds of streams fall due in the same turn, and each callback was a handle made,
    queued and run for one token (docs/benchmarks.md). A pusher appends itself to `pending`
    and calls `start()` first when it finds the list empty.

    It keeps no reference to its loop: `_queues` holds it under a weak reference to the loop,
    and a value that referred to its key would keep every closed loop alive."""

    __slots__ = ("pending",)

    def __init__(self) -> None:
        self.pending: list[Pusher] = []

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


_queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, FlushQueue] = (
    weakref.WeakKeyDictionary()
)


def flush_queue() -> FlushQueue:
    """The running loop's flush queue (made on first use; it goes with its loop)."""
    loop = asyncio.get_running_loop()
    queue = _queues.get(loop)
    if queue is None:
        queue = _queues[loop] = FlushQueue()
    return queue


class Pusher(DirectWriter):
    """Takes a waiting reader's events from the log as they are appended (`set_push`): each
    push only notes the event, and the loop's flush queue encodes and writes, once per loop
    turn, what came in that turn as one chunk. It refuses the terminal event, and everything
    while the connection is not writable: the reader wakes and sends those.

    A `DirectWriter` itself, so that `push` and `flush` read the connection's state as
    `writable` and `write` do, without a call of either: both run once per token."""

    __slots__ = ("_encoder", "_pending", "_queue", "_scheduled", "_sub", "after", "until")

    def __init__(
        self, writer: DirectWriter, sub: Subscription, encoder: Encoder, queue: FlushQueue
    ) -> None:
        super().__init__(writer.cycle)
        self._sub = sub
        self._encoder = encoder
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
        body = self._encoder.pairs(self.after + 1, self._sub.pairs(self.after, count))
        self.after = self.until
        cycle = self._cycle  # `write`, inline
        if body and not (cycle.disconnected or cycle.response_complete):
            self._transport.write(b"%x\r\n%b\r\n" % (len(body), body))
