"""New turns on a session's earlier messages: regenerate the last answer, edit a user message.

- `POST /api/sessions/{id}/regenerate`: a new answer to the last user message; the earlier
  answer (with its tool rounds) stays stored, `superseded`, as a version of the new one.
- `POST /api/sessions/{id}/messages/{message_id}/edit`: the user message said again; it and
  every message after it stay stored as a superseded branch, and the model sees only what
  came before it, then the new text.

Both stream like any turn (the chat pipeline, SSE, resumable), take the same `options`, and
obey one turn at a time (SESSION_BUSY while an answer runs: cancel it first).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response

from tokenrelay.pipelines.chat import ChatTurn
from tokenrelay.server.deps import (
    get_services,
    owner_of,
    prepare_turn,
    start_chat_turn,
    trace_id_for,
)
from tokenrelay.server.json_checks import CheckedRoute
from tokenrelay.server.routes.chat import event_names_for
from tokenrelay.server.schemas import (
    ID_PATTERN,
    ChatOptions,
    ChatRequest,
    EditRequest,
    RegenerateRequest,
)
from tokenrelay.server.sse import stream_response
from tokenrelay.services import Services
from tokenrelay.sessions.base import (
    StoredMessage,
    is_superseded,
    not_editable,
    nothing_to_regenerate,
    session_not_found,
)

router = APIRouter(route_class=CheckedRoute, tags=["sessions"])

_SSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": "the answer's events"}
}


async def _current_user_messages(
    services: Services, session_id: str, owner: str | None
) -> list[StoredMessage]:
    """The session's user messages the model still sees; SESSION_NOT_FOUND as for reading."""
    if await services.sessions.get_session(session_id, owner=owner) is None:
        raise session_not_found(session_id)
    return [
        m
        for m in await services.sessions.messages(session_id)
        if m.role == "user" and not is_superseded(m)
    ]


async def _turn(
    request: Request, session_id: str, message: str, options: ChatOptions
) -> tuple[Services, ChatTurn]:
    services = get_services(request)
    asked = ChatRequest(message=message, session_id=session_id, options=options)
    turn = await prepare_turn(
        services, asked, trace_id=trace_id_for(request), owner=owner_of(request)
    )
    return services, dataclasses.replace(turn, create_session=False)


async def _stream(
    request: Request, services: Services, turn: ChatTurn, event_names: bool | None
) -> Response:
    await start_chat_turn(request, services, turn)
    names = event_names_for(services, event_names)
    return stream_response(
        services, turn.stream_id, event_names=names, trace_id=turn.trace_id, starts=True
    )


@router.post(
    "/api/sessions/{session_id}/regenerate",
    summary="Answer the last user message again (SSE); the earlier answer is kept as a version",
    response_class=Response,
    responses=_SSE,
)
async def regenerate(
    body: RegenerateRequest, request: Request, session_id: str = Path(pattern=ID_PATTERN)
) -> Response:
    services = get_services(request)
    users = await _current_user_messages(services, session_id, owner_of(request))
    if not users:
        raise nothing_to_regenerate(session_id)
    services, turn = await _turn(request, session_id, users[-1].content, body.options)
    return await _stream(
        request, services, dataclasses.replace(turn, regenerate=True), body.event_names
    )


@router.post(
    "/api/sessions/{session_id}/messages/{message_id}/edit",
    summary="Say a user message again and continue from there (SSE); the old branch is kept",
    response_class=Response,
    responses=_SSE,
)
async def edit(
    body: EditRequest,
    request: Request,
    session_id: str = Path(pattern=ID_PATTERN),
    message_id: str = Path(pattern=ID_PATTERN),
) -> Response:
    services = get_services(request)
    users = await _current_user_messages(services, session_id, owner_of(request))
    if not any(m.id == message_id for m in users):
        raise not_editable(session_id, message_id)
    services, turn = await _turn(request, session_id, body.message, body.options)
    return await _stream(
        request, services, dataclasses.replace(turn, edit_of=message_id), body.event_names
    )
