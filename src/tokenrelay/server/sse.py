"""The SSE response: the HTTP side of a reading (`delivery/`), from any position.

It subscribes to the stream, sends the response start through the middleware chain (so every
middleware sees the status and headers), and hands the rest to a `Reader` with the response's
`Sink` and `Encoder`: our native frames by default, or another wire format of the same events
(OpenAI's chunks on `/v1/chat/completions`).

Why not sse-starlette here: it was our first choice, and the relay benchmark showed it costs
the most in the hot path (docs/benchmarks.md): an anyio task group of four tasks per response
and a cancel scope per send. This response does the same job with one coroutine per response.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import orjson
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from tokenrelay.delivery.encoders import Encoder, NativeEncoder
from tokenrelay.delivery.reader import Reader
from tokenrelay.delivery.sinks import Sink
from tokenrelay.errors import StreamNotFound
from tokenrelay.events import Envelope
from tokenrelay.server.asgi import handoff_of, retry_after_value
from tokenrelay.services import Services

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
SSE_RAW_HEADERS = [
    *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in SSE_HEADERS.items()),
    (b"content-type", b"text/event-stream; charset=utf-8"),
]


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
        encoder: Encoder | None = None,
        headers: list[tuple[bytes, bytes]] | None = None,
        start_wait_s: float = 0.0,
    ) -> None:
        self.status_code = 200
        self.background = None
        # built once for every response (Starlette's init_headers made ten objects each)
        self.raw_headers = [*SSE_RAW_HEADERS, *(headers or ())]  # a list of its own
        if trace_id:
            self.raw_headers.append((b"x-trace-id", trace_id.encode("latin-1")))
        self._services = services
        self.stream_id = stream_id
        self.after_seq = after_seq
        # a new stream: how long to wait for an error before the headers (`_start`)
        self.start_wait_s = start_wait_s if after_seq == 0 else 0.0
        # the native first frame tells the client when to retry
        self.encoder = encoder or NativeEncoder(
            stream_id, event_names=event_names, retry_ms=services.settings.retry_ms
        )
        # called once when the reading ends (or never starts): a per-client reading slot
        # (`limits.reading_slot`) goes back
        self.on_close: Callable[[], Awaitable[None]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        reader = await self.open(scope, receive, send)
        if reader is None:
            return
        handoff = handoff_of(scope)
        if handoff is not None:  # the outer layer follows the stream (server/front.py)
            handoff.reader = reader
            return
        await reader.follow()

    async def open(self, scope: Scope, receive: Receive, send: Send) -> Reader | None:
        """Subscribe, and make the reader, which sends the response start when it begins to
        follow (`_start`); None if the stream is gone (answered).

        The start is the reader's first step, not done here, so that the wait for an early
        error (`stream_start_wait_s`) happens after the hand-off: the middleware chain has
        returned by then, and a stream whose model has not begun yet holds none of its frames
        (the idle-memory target of docs/benchmarks.md). The start still goes through the chain's
        `send`, whose layers see the status and headers as before."""
        services = self._services
        try:
            sub = await services.log.subscribe(self.stream_id, self.after_seq)
        except StreamNotFound as exc:  # expired between the route's check and now
            if self.on_close is not None:
                await self.on_close()
            await JSONResponse(exc.to_dict(), status_code=exc.http_status)(scope, receive, send)
            return None
        # the middleware chain sees the start; the body skips it (`asgi.Handoff`)
        handoff = handoff_of(scope)
        sink = Sink(send, send) if handoff is None else Sink(handoff.send, handoff.send)
        reader = Reader(
            services,
            self.stream_id,
            sub,
            sink,
            self.encoder,
            after_seq=self.after_seq,
            on_close=self.on_close,
            start_wait_s=self.start_wait_s,
        )
        if not reader.watched:
            reader.listener = asyncio.create_task(self._listen(receive, reader.gone))
        # not a method of this response: a waiting stream keeps the starter, not the response
        reader.starter = partial(_start, send, self.raw_headers, self.encoder, self.stream_id)
        return reader

    @staticmethod
    async def _listen(receive: Receive, gone: Callable[[], None]) -> None:
        """Wait for the client to go away (servers `Sink.watch_disconnect` cannot watch)."""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                gone()
                return


async def _start(
    send: Send,
    headers: list[tuple[bytes, bytes]],
    encoder: Encoder,
    stream_id: str,
    error: Envelope | None,
) -> None:
    """The response start; or, given the stream's `error` that came before any event but
    `metadata` (an unknown model, a provider's refusal: the reader holds a new stream's start
    up to `start_wait_s` for it), the encoder's HTTP error of its code: clients branch on
    the status (docs/protocol.md)."""
    if error is None:
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        return
    event: dict[str, Any] = orjson.loads(error.data)
    status, body = encoder.error_response({**event, "stream_id": stream_id})
    answer = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    answer.extend(h for h in headers if h[0] == b"x-trace-id")
    if event.get("retry_after_s") is not None:
        answer.append((b"retry-after", retry_after_value(float(event["retry_after_s"])).encode()))
    await send({"type": "http.response.start", "status": status, "headers": answer})
    await send({"type": "http.response.body", "body": body})


def stream_response(
    services: Services,
    stream_id: str,
    *,
    after_seq: int = 0,
    event_names: bool = True,
    trace_id: str | None = None,
    starts: bool = False,
) -> EventStreamResponse:
    """The SSE response of a stream; `starts`: the request started it, so an error before its
    first event is answered as an HTTP error (`stream_start_wait_s`)."""
    return EventStreamResponse(
        services,
        stream_id,
        after_seq=after_seq,
        event_names=event_names,
        trace_id=trace_id,
        start_wait_s=services.settings.stream_start_wait_s if starts else 0.0,
    )
