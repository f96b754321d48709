"""The streaming loop shared by the hosted adapters: SDK stream in, provider events out.

Each adapter brings three things: how to open its SDK's stream, a pure `Reader` that turns one
SDK item into events (and checks at the end that the answer is complete), and how to map its
SDK's exceptions. `relay` does the rest, the same way for every SDK:

- SDK exceptions raised while opening or reading become our `ProviderError` (`raise ... from e`);
- the reader's closing events (usage, finish) follow the last item;
- `finally` closes the SDK stream, so cancellation or `aclose()` of the generator closes the
  upstream response at once.

Adapters return `relay(...)` from `stream()` directly rather than iterating it inside a
generator of their own: a wrapping generator would leave this one suspended, and the upstream
response open, until it is garbage collected.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable, Awaitable, Callable
from typing import Protocol, TypeVar

from tokenrelay.errors import ProviderError
from tokenrelay.providers.base import ProviderEvent

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
T_contra = TypeVar("T_contra", contravariant=True)


class Reader(Protocol[T_contra]):
    """Turns SDK stream items into provider events. No I/O."""

    def feed(self, item: T_contra, /) -> list[ProviderEvent]: ...

    def end(self) -> list[ProviderEvent]:
        """The closing events; raises `ProviderError` when the stream ended unfinished."""
        ...


class SdkStream(AsyncIterable[T_co], Protocol[T_co]):
    """An SDK's open stream: iterable, and closing it closes the upstream response."""

    async def close(self) -> None: ...


async def relay(
    open_stream: Callable[[], Awaitable[SdkStream[T]]],
    reader: Reader[T],
    sdk_errors: type[Exception] | tuple[type[Exception], ...],
    map_error: Callable[[Exception], ProviderError],
) -> AsyncGenerator[ProviderEvent, None]:
    """Open the stream, yield what `reader` makes of it, and close it however this ends."""
    stream: SdkStream[T] | None = None
    try:
        try:
            stream = await open_stream()
            async for item in stream:
                for event in reader.feed(item):
                    yield event
        except sdk_errors as e:
            raise map_error(e) from e
        for event in reader.end():
            yield event
    finally:
        if stream is not None:
            await stream.close()
