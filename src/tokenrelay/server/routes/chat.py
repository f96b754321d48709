"""Chat endpoints: SSE (POST and EventSource GET) and the non-streaming JSON form."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from tokenrelay.server.collect import collected, error_json
from tokenrelay.server.deps import (
    get_services,
    owner_of,
    prepare_turn,
    resume_position,
    start_chat_turn,
    trace_id_for,
)
from tokenrelay.server.json_checks import CheckedRoute
from tokenrelay.server.query_form import QueryForm
from tokenrelay.server.resume import resume_response
from tokenrelay.server.schemas import ChatRequest
from tokenrelay.server.sse import stream_response
from tokenrelay.services import Services

router = APIRouter(route_class=CheckedRoute, tags=["chat"])


async def start_chat(services: Services, body: ChatRequest, request: Request) -> tuple[str, str]:
    """Validate, start the chat pipeline on the runner; (stream_id, trace_id)."""
    trace_id = trace_id_for(request)
    turn = await prepare_turn(services, body, trace_id=trace_id, owner=owner_of(request))
    await start_chat_turn(request, services, turn)
    return turn.stream_id, trace_id


def event_names_for(services: Services, asked: bool | None) -> bool:
    return services.settings.event_names if asked is None else asked


async def chat_stream_response(body: ChatRequest, request: Request) -> Response:
    """Start the turn; its SSE response (`POST /api/chat/stream`: server/chat_stream_route.py)."""
    services = get_services(request)
    stream_id, trace_id = await start_chat(services, body, request)
    names = event_names_for(services, body.event_names)
    return stream_response(services, stream_id, event_names=names, trace_id=trace_id, starts=True)


CHAT_QUERY = QueryForm(ChatRequest, flatten=("options",))


@router.get(
    "/api/chat/stream",
    summary="Stream an answer (EventSource); resumes on Last-Event-ID",
    description="The query form of `ChatRequest` (docs/protocol.md): the body's fields as "
    "parameters, `options` flattened, objects as JSON text, lists repeated.",
    openapi_extra={"parameters": CHAT_QUERY.openapi_parameters()},
)
async def chat_stream_get(request: Request, body: ChatRequest = Depends(CHAT_QUERY)) -> Response:
    services = get_services(request)
    names = event_names_for(services, body.event_names)
    position = resume_position(request)
    if position is not None:  # an EventSource reconnecting: continue its stream, don't ask again
        stream_id, seq = position
        return await resume_response(
            services, request, stream_id, seq, event_names=names, trace_id=trace_id_for(request)
        )
    stream_id, trace_id = await start_chat(services, body, request)
    return stream_response(services, stream_id, event_names=names, trace_id=trace_id, starts=True)


@router.post("/api/chat", summary="The whole answer as JSON, from the same pipeline")
async def chat_json(body: ChatRequest, request: Request) -> Response:
    services = get_services(request)
    stream_id, trace_id = await start_chat(services, body, request)
    result: dict[str, Any] = {"stream_id": stream_id, "trace_id": trace_id}
    parts: list[str] = []
    async for event in collected(services, stream_id):
        kind = event.pop("type")
        if kind == "token":
            parts.append(event["content"])
        elif kind in ("metadata", "done"):
            result.update(event)
        elif kind == "error":
            return error_json(event, trace_id, stream_id=stream_id, partial_content="".join(parts))
        elif kind in ("sources", "complete"):
            result[kind] = event.get("documents", event.get("result"))
    result["content"] = "".join(parts)
    return JSONResponse(result, headers={"X-Trace-ID": trace_id})
