"""The SSE response: reads a stream from the log and sends it, from any position.

sse-starlette carries the response mechanics (heartbeat comments from the first byte, client
disconnect detection, send timeouts); our frames are pre-encoded bytes from `encode_sse`.
When the reader goes away before the terminal event, the runner hears of it (`detach`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from sse_starlette import EventSourceResponse, ServerSentEvent

from tokenrelay.events import encode_sse
from tokenrelay.services import Services

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _ping() -> ServerSentEvent:
    return ServerSentEvent(comment="ping", sep="\n")


async def _frames(
    services: Services, stream_id: str, after_seq: int, event_names: bool
) -> AsyncIterator[bytes]:
    runner = services.runner
    retry: int | None = services.settings.retry_ms
    runner.attach(stream_id)
    finished = False
    try:
        async for env in services.log.read(stream_id, after_seq):
            finished = env.terminal
            yield encode_sse(stream_id, env, event_names=event_names, retry_ms=retry)
            retry = None
    finally:
        runner.detach(stream_id, finished=finished)


def stream_response(
    services: Services,
    stream_id: str,
    *,
    after_seq: int = 0,
    event_names: bool = True,
    trace_id: str | None = None,
) -> EventSourceResponse:
    headers = dict(SSE_HEADERS)
    if trace_id:
        headers["X-Trace-ID"] = trace_id
    return EventSourceResponse(
        _frames(services, stream_id, after_seq, event_names),
        headers=headers,
        ping=services.settings.heartbeat_s,
        ping_message_factory=_ping,
        sep="\n",
    )
