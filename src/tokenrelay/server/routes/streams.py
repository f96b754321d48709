"""Stream endpoints: resume from Last-Event-ID, and cancel."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import JSONResponse, Response
from pydantic import Field

from tokenrelay.server.deps import (
    get_services,
    owner_of,
    resume_position,
    trace_id_for,
)
from tokenrelay.server.json_checks import CheckedRoute
from tokenrelay.server.query_form import QueryForm
from tokenrelay.server.resume import resume_response
from tokenrelay.server.schemas import ID_PATTERN
from tokenrelay.server.streams_access import check_stream_access
from tokenrelay.spelling import RequestModel

router = APIRouter(route_class=CheckedRoute, tags=["streams"])


class ResumeQuery(RequestModel):
    """The query of `GET /api/streams/{stream_id}` (and `last_event_id`, which every stream
    route reads: server/query_check.py)."""

    event_names: bool | None = Field(
        default=None, description="false leaves out `event:` lines (EventSource.onmessage)"
    )


RESUME_QUERY = QueryForm(ResumeQuery)


@router.get(
    "/api/streams/{stream_id}",
    summary="Replay a stream from Last-Event-ID and follow it",
    responses={204: {"description": "nothing left to send: the stream ended, or is unknown"}},
    openapi_extra={"parameters": RESUME_QUERY.openapi_parameters()},
)
async def resume_stream(
    request: Request,
    stream_id: str = Path(pattern=ID_PATTERN),
    query: ResumeQuery = Depends(RESUME_QUERY),
) -> Response:
    services = get_services(request)
    position = resume_position(request, stream_id)
    after = position[1] if position else 0
    names = services.settings.event_names if query.event_names is None else query.event_names
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
