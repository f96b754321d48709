"""uvicorn's own transport, for SSE body chunks written between two event-loop turns.

Why: a token that reaches a reader which is waiting for it used to cost a future, a task
wake-up, the reader's loop and an ASGI `send` coroutine before the socket write. With this
the log hands the token to the reader's `push` (server/sse.py) at once; the reader encodes it
and a callback writes what gathered in this loop turn as one chunk. That is the step the relay
benchmark's paced CPU per event was spent on beyond the naive app's (bench/relay/findings.md).

It is a bypass of uvicorn's `send`, so it is narrow: only uvicorn's httptools protocol (whose
`RequestResponseCycle` keeps `transport`, `flow`, `disconnected` and `chunked_encoding`),
only chunked responses, and only while the connection is writable (`flow.write_paused` is
uvicorn's back-pressure; when it is set the reader goes back to awaiting `send`, which
drains). Everything else — the response start, the terminal event, the end of the body,
heartbeats, any other server — goes through ASGI as before. A test checks that the bypass is
taken under uvicorn, so an upgrade that changes these attributes fails loudly, not slowly.
"""

from __future__ import annotations

from typing import Any

from starlette.types import Send

HTTPTOOLS_CYCLE = "uvicorn.protocols.http.httptools_impl"


class DirectWriter:
    __slots__ = ("_cycle", "_flow", "_transport")

    def __init__(self, cycle: Any) -> None:
        self._cycle = cycle
        self._transport = cycle.transport
        self._flow = cycle.flow

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


def direct_writer(send: Send) -> DirectWriter | None:
    """A writer for `send`'s connection once the response has started, or None."""
    cycle: Any = getattr(send, "__self__", None)
    if type(cycle).__module__ != HTTPTOOLS_CYCLE:
        return None
    needed = ("transport", "flow", "disconnected", "response_complete", "chunked_encoding")
    if not all(hasattr(cycle, name) for name in needed) or cycle.chunked_encoding is not True:
        return None
    return DirectWriter(cycle)
