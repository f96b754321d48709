"""The SSE response: reads a stream from the log and sends it, from any position.

Why not sse-starlette here: it was our first choice, and the relay benchmark showed it costs
the most in the hot path (bench/relay/findings.md): an anyio task group of four tasks per
response and a cancel scope per send. This response does the same job with one coroutine and
one small task per response:

- frames are pre-encoded bytes (`encode_sse`); whatever is in the log when the reader wakes is
  sent in one write;
- the reader sleeps on a future that the log resolves on the next event, that a timer resolves
  every `heartbeat_s` to send a `: ping` comment (from the first byte on), and that a listener
  task resolves when the client disconnects (`http.disconnect`);
- when the reader leaves before the terminal event the runner hears of it (`detach`), which is
  how a disconnect reaches the provider.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from tokenrelay.errors import StreamNotFound
from tokenrelay.events import PING_FRAME, encode_sse
from tokenrelay.server.asgi import RAW_SEND
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
    ) -> None:
        self.status_code = 200
        self.background = None
        # built once for every response (Starlette's init_headers made ten objects each)
        self.raw_headers = (
            [*SSE_RAW_HEADERS, (b"x-trace-id", trace_id.encode("latin-1"))]
            if trace_id
            else list(SSE_RAW_HEADERS)  # a list of its own: middleware may add headers
        )
        self._services = services
        self._stream_id = stream_id
        self._after = after_seq
        self._event_names = event_names
        self._gone = False
        self._ping_due = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        services = self._services
        try:
            sub = await services.log.subscribe(self._stream_id, self._after)
        except StreamNotFound as exc:  # expired between the route's check and now
            await JSONResponse(exc.to_dict(), status_code=exc.http_status)(scope, receive, send)
            return
        runner = services.runner
        runner.attach(self._stream_id)
        loop = asyncio.get_running_loop()
        heartbeat = services.settings.heartbeat_s

        def ping() -> None:
            self._ping_due = True
            sub.wake()

        listener = loop.create_task(self._listen(receive, sub.wake))
        timer = loop.call_later(heartbeat, ping)
        finished = False
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            # the middleware chain has seen the start; body chunks skip it (asgi.RawSendShim)
            body_send: Send = scope.get(RAW_SEND, send)
            after = self._after
            retry: int | None = services.settings.retry_ms
            while not self._gone:
                batch = sub.take(after)
                if batch:
                    frames = []
                    for env in batch:
                        frames.append(
                            encode_sse(
                                self._stream_id, env, event_names=self._event_names, retry_ms=retry
                            )
                        )
                        retry = None
                        after = env.seq
                        if env.terminal:
                            finished = True
                            break
                    await body_send(
                        {"type": "http.response.body", "body": b"".join(frames), "more_body": True}
                    )
                    if finished:
                        break
                    continue
                if sub.done:
                    break
                await sub.waiter()
                if self._ping_due and not self._gone:
                    self._ping_due = False
                    await body_send(
                        {"type": "http.response.body", "body": PING_FRAME, "more_body": True}
                    )
                    timer = loop.call_later(heartbeat, ping)
            if not self._gone:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            self._gone = True  # servers that raise on a closed connection
        finally:
            timer.cancel()
            listener.cancel()
            sub.close()
            runner.detach(self._stream_id, finished=finished)
            with contextlib.suppress(asyncio.CancelledError):
                await listener

    async def _listen(self, receive: Receive, wake: Callable[[], None]) -> None:
        """Wait for the client to go away; wake the reader when it does."""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self._gone = True
                wake()
                return


def stream_response(
    services: Services,
    stream_id: str,
    *,
    after_seq: int = 0,
    event_names: bool = True,
    trace_id: str | None = None,
) -> EventStreamResponse:
    return EventStreamResponse(
        services, stream_id, after_seq=after_seq, event_names=event_names, trace_id=trace_id
    )
