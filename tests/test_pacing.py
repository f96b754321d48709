"""The idle timeout and coalescing adapters, and the scripted text splitter."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tokenrelay.errors import StreamTimeout
from tokenrelay.providers.base import Finish, ProviderEvent, TextDelta, Usage
from tokenrelay.providers.scripted import split_pieces
from tokenrelay.streams.pacing import IdleWatchdog, coalesce_text


async def _source(
    items: list[ProviderEvent],
    delay: float = 0.0,
    stall_at: int | None = None,
    seen: list[str] | None = None,
) -> AsyncIterator[ProviderEvent]:
    try:
        for i, item in enumerate(items):
            if stall_at is not None and i == stall_at:
                await asyncio.Event().wait()
            if delay:
                await asyncio.sleep(delay)
            yield item
    except asyncio.CancelledError:
        if seen is not None:
            seen.append("cancelled")
        raise


async def test_idle_timeout_cancels_the_source() -> None:
    seen: list[str] = []
    out: list[ProviderEvent] = []
    source = _source([TextDelta("a"), TextDelta("b")], stall_at=1, seen=seen)
    watchdog = IdleWatchdog(0.05)
    with pytest.raises(StreamTimeout):
        try:
            async for ev in source:  # as stream_round consumes a provider
                watchdog.fed()
                out.append(ev)
        except asyncio.CancelledError as exc:
            assert watchdog.fired
            raise watchdog.timeout() from exc
        finally:
            watchdog.stop()
    assert out == [TextDelta("a")]
    assert seen == ["cancelled"]
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_coalesce_passes_non_text_events_in_order() -> None:
    items: list[ProviderEvent] = [
        TextDelta("a"),
        TextDelta("b"),
        Usage(1, 2),
        TextDelta("c"),
        Finish("stop"),
    ]
    out = [ev async for ev in coalesce_text(_source(items), 10.0)]
    assert out == [TextDelta("ab"), Usage(1, 2), TextDelta("c"), Finish("stop")]


async def test_coalesce_cancellation_reaches_the_source() -> None:
    seen: list[str] = []

    async def consume() -> None:
        async for _ in coalesce_text(
            _source([TextDelta("a"), TextDelta("b")], stall_at=1, seen=seen), 0.01
        ):
            pass

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == ["cancelled"]


@given(st.text(max_size=300), st.integers(min_value=1, max_value=400))
def test_split_pieces_is_lossless(text: str, tokens: int) -> None:
    pieces = split_pieces(text, tokens)
    assert len(pieces) == tokens
    assert all(pieces)
    joined = "".join(pieces)
    assert joined.startswith(text or ".")


@given(st.text(max_size=300))
def test_split_by_words_is_exact(text: str) -> None:
    pieces = split_pieces(text, None)
    assert "".join(pieces) == text or not text.strip()


@given(st.text(max_size=200), st.integers(min_value=0, max_value=10**6))
def test_the_token_fast_path_is_the_same_json_as_the_model(content: str, index: int) -> None:
    from tokenrelay.events import TokenEvent, envelope, token_event

    fast = envelope(7, token_event(content, index))
    model = envelope(7, TokenEvent(content=content, index=index))
    assert fast == model
