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

    The wait that times out is cancelled, so the provider sees the cancellation and stops.
    """
    try:
        while True:
            try:
                async with asyncio.timeout(seconds):
                    item = await anext(source)
            except StopAsyncIteration:
                return
            except TimeoutError as exc:
                raise StreamTimeout(
                    f"the model produced no output for {seconds:g} s",
                    suggestion="retry, or raise TOKENRELAY_IDLE_TIMEOUT_S"
                    " if the model is slow to start",
                ) from exc
            yield item
    finally:
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
