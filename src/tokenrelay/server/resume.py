"""A resume (`GET /api/streams/{id}`, or `GET /api/chat/stream` with a Last-Event-ID): the
end when nothing is left to send (204, or JSON 404), else the stream from that position.

A replay of a stream that has finished holds a per-client slot (`max_streams_per_client`)
while it is open, as a running stream does; a resume of a running stream rides on the
stream's own slot, so a client that lost its connection can always come back to its answer.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from tokenrelay.i18n import set_locale
from tokenrelay.server.deps import resume_end
from tokenrelay.server.limits import reading_slot
from tokenrelay.server.sse import stream_response
from tokenrelay.services import Services
from tokenrelay.streams.log import StreamInfo


def in_the_streams_language(info: StreamInfo | None) -> None:
    """What this reading says itself (a stream cut short under it, its log unreachable, a
    stream declared lost) in the language of the request that started the stream, like the
    stream's own events; the request's language when the stream has none recorded."""
    if info is not None and info.locale:
        set_locale(info.locale)


async def resume_response(
    services: Services,
    request: Request,
    stream_id: str,
    after_seq: int,
    *,
    event_names: bool,
    trace_id: str | None,
    counted: bool = True,
) -> Response:
    """The answer to a resume; `counted`: a resume for the metrics (not a first reading)."""
    info = await services.log.info(stream_id)
    ended = resume_end(info, request, stream_id, after_seq)
    if ended is not None:
        return ended
    in_the_streams_language(info)
    release = await reading_slot(request) if info is not None and info.finished else None
    if counted:
        services.metrics.resumes.inc()
    response = stream_response(
        services, stream_id, after_seq=after_seq, event_names=event_names, trace_id=trace_id
    )
    response.on_close = release
    return response
