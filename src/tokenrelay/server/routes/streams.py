"""Stream endpoints: resume from Last-Event-ID, and cancel."""

from __future__ import annotations

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse, Response

from tokenrelay.server.deps import (
    get_services,
    owner_of,
    resume_position,
    trace_id_for,
)
from tokenrelay.server.resume import resume_response
from tokenrelay.server.schemas import ID_PATTERN
from tokenrelay.server.streams_access import check_stream_access

router = APIRouter(tags=["streams"])


@router.get(
    "/api/streams/{stream_id}",
    summary="Replay a stream from Last-Event-ID and follow it",
    responses={204: {"description": "nothing left to send: the stream ended, or is unknown"}},
)
async def resume_stream(
    request: Request,
    stream_id: str = Path(pattern=ID_PATTERN),
    event_names: bool | None = Query(default=None),
) -> Response:
    services = get_services(request)
    position = resume_position(request, stream_id)
    after = position[1] if position else 0
    names = services.settings.event_names if event_names is None else event_names
    return await resume_response(
        services,
        request,
        stream_id,
        after,
        event_names=names,
        trace_id=trace_id_for(request),
        counted=position is not None,
    )


@router.post("/api/streams/{stream_id}/cancel", summary="Stop a stream's generation")
async def cancel_stream(request: Request, stream_id: str = Path(pattern=ID_PATTERN)) -> Response:
    services = get_services(request)
    info = await check_stream_access(services, stream_id, owner_of(request))
    cancelled = await services.runner.cancel(stream_id, "request")
    return JSONResponse(
        {
            "stream_id": stream_id,
            "cancelled": cancelled,
            "finished": info.finished and not cancelled,
        }
    )
