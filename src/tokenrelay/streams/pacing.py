"""Pacing of provider output: the idle-timeout watchdog and token coalescing."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from tokenrelay.errors import StreamTimeout
from tokenrelay.i18n import tr
from tokenrelay.providers.base import ProviderEvent, TextDelta
from tokenrelay.streams import timers


async def aclose_quietly(iterator: AsyncIterator[Any]) -> None:
    close = getattr(iterator, "aclose", None)
    if close is not None:
        await close()


class IdleWatchdog:
    """Cancels the task that made it when nothing arrives for `seconds` (the idle timeout);
    the task's wait on the provider is what gets cancelled, so the provider stops.

    One timer per stream, re-armed only when it fires, instead of a timer per item (a timer
    per token was a large share of the relay's CPU under load: docs/benchmarks.md). The
    owner calls `fed()` on every item; when the cancel it caused arrives, `fired` is True
    and `timeout()` is the error to raise instead. Its clock is `time.monotonic`: an owner
    that has just read it may set `last` itself instead of calling `fed()` (one clock read
    per token, not two).
    """

    __slots__ = ("_handle", "_seconds", "_task", "fired", "last")

    def __init__(self, seconds: float) -> None:
        self._task = asyncio.current_task()
        self._seconds = seconds
        self.last = time.monotonic()
        self.fired = False
        self._handle = timers.call_later(seconds, self._check)

    def _check(self) -> None:
        remaining = self.last + self._seconds - time.monotonic()
        if remaining > 0 or self._task is None:
            self._handle = timers.call_later(max(remaining, self._seconds / 10), self._check)
            return
        self.fired = True
        self._task.cancel()

    def fed(self) -> None:
        self.last = time.monotonic()

    def stop(self) -> None:
        self._handle.cancel()

    def timeout(self) -> StreamTimeout:
        """The error to raise for the cancel this watchdog caused (the cancel is withdrawn)."""
        if self._task is not None:
            self._task.uncancel()
        return idle_timeout(self._seconds)


def idle_timeout(seconds: float) -> StreamTimeout:
    """The error of a model that produced nothing for `seconds` (`idle_timeout_s`)."""
    return StreamTimeout(
        tr("the model produced no output for {seconds:g} s", seconds=seconds),
        suggestion=tr("retry"),
        details={"operator": "raise TOKENRELAY_IDLE_TIMEOUT_S if the model is slow to start"},
    )


async def coalesce_text(
    source: AsyncIterator[ProviderEvent], window_s: float
) -> AsyncGenerator[ProviderEvent, None]:
    """Merge text deltas that arrive within `window_s` of the first buffered one.

    Nothing is ever lost: the buffer is flushed when the window closes (even if the provider is
    silent), before any non-text event, and at the end of the stream.
    """
    loop = asyncio.get_running_loop()
    buffer: list[str] = []
    deadline = 0.0
    pending: asyncio.Task[ProviderEvent] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(source))
            if buffer:
                done, _ = await asyncio.wait({pending}, timeout=max(0.0, deadline - loop.time()))
                if not done:
                    yield TextDelta("".join(buffer))
                    buffer.clear()
                    continue
            else:
                await asyncio.wait({pending})
            task, pending = pending, None
            try:
                event = task.result()
            except StopAsyncIteration:
                break
            if isinstance(event, TextDelta):
                if not buffer:
                    deadline = loop.time() + window_s
                buffer.append(event.text)
                continue
            if buffer:
                yield TextDelta("".join(buffer))
                buffer.clear()
            yield event
        if buffer:
            yield TextDelta("".join(buffer))
    finally:
        if pending is not None and not pending.done():
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await pending
        await aclose_quietly(source)
