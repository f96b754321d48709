"""Async iterator adapters for provider output: an idle timeout and token coalescing."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, TypeVar

from tokenrelay.errors import StreamTimeout
from tokenrelay.providers.base import ProviderEvent, TextDelta

T = TypeVar("T")


async def aclose_quietly(iterator: AsyncIterator[Any]) -> None:
    close = getattr(iterator, "aclose", None)
    if close is not None:
        await close()


async def with_idle_timeout(source: AsyncIterator[T], seconds: float) -> AsyncGenerator[T, None]:
    """Yield from `source`; if it produces nothing for `seconds`, cancel it and raise TIMEOUT.

    One watchdog timer per stream, re-armed only when it fires, instead of a timer per item
    (a timer per token was a fifth of the relay's CPU at 1,000 streams: bench/relay/findings.md).
    The wait that times out is cancelled, so the provider sees the cancellation and stops.
    """
    loop = asyncio.get_running_loop()
    last = loop.time()
    waiting: asyncio.Task[Any] | None = None  # the task awaiting the source, if any
    fired = False
    handle: asyncio.TimerHandle | None = None

    def watchdog() -> None:
        nonlocal handle, fired
        remaining = last + seconds - loop.time()
        if remaining > 0 or waiting is None:
            handle = loop.call_later(max(remaining, seconds / 10), watchdog)
            return
        fired = True
        waiting.cancel()

    handle = loop.call_later(seconds, watchdog)
    try:
        while True:
            waiting = asyncio.current_task()
            try:
                item = await anext(source)
            except StopAsyncIteration:
                return
            except asyncio.CancelledError as exc:
                if not fired:
                    raise
                if waiting is not None:
                    waiting.uncancel()
                raise StreamTimeout(
                    f"the model produced no output for {seconds:g} s",
                    suggestion="retry, or raise TOKENRELAY_IDLE_TIMEOUT_S"
                    " if the model is slow to start",
                ) from exc
            finally:
                waiting = None
            last = loop.time()
            yield item
    finally:
        if handle is not None:
            handle.cancel()
        await aclose_quietly(source)


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
