"""Where one response's body goes: the `Sink`, chosen per connection.

Every response has the ASGI `send` it was given: the sink writes the body through it, and that
works under any ASGI server. Under uvicorn's httptools protocol, once the response has started,
it also has a `DirectWriter` onto the connection's transport (`delivery/direct_write.py`):
then a waiting reader takes its events by push and they are written per loop turn
(`delivery/flush.py`), and back-pressure is read from the transport. Anywhere else `writer` is
None and the sink is plain ASGI, by itself: nothing to configure, nothing that breaks when the
server is not the uvicorn that `direct_write.py` knows (a test fails loudly when it changes).

`send` writes body chunks; `end` is the `send` that ends the body, which is the one that went
through the middleware chain when some layer of it still waits for the end (server/sse.py).
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import Send

from tokenrelay.delivery.direct_write import DirectWriter, direct_writer, watch_disconnect


class Sink:
    __slots__ = ("_end", "_send", "writer")

    def __init__(self, send: Send, end: Send) -> None:
        self._send = send
        self._end = end
        # uvicorn's transport for this connection, or None (not uvicorn, or not chunked):
        # known once the response has started (`started`)
        self.writer: DirectWriter | None = None

    def started(self) -> None:
        """The response start is sent: now the connection can be written to directly."""
        self.writer = direct_writer(self._send)

    async def write(self, body: bytes) -> None:
        await self._send({"type": "http.response.body", "body": body, "more_body": True})

    async def close(self, body: bytes = b"") -> None:
        """The last bytes, and the end of the body."""
        await self._end({"type": "http.response.body", "body": body, "more_body": False})

    def watch_disconnect(self, gone: Callable[[], None]) -> Callable[[], None] | None:
        """Call `gone` when the client leaves, without a task; the returned callable stops
        watching. None when this server cannot be watched so (await `http.disconnect`)."""
        return watch_disconnect(self._send, gone)
