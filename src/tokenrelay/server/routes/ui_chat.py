"""The AI SDK's `useChat` backend: its request in, the UI message stream out (docs/frontend.md).

- `POST /api/ui/chat`: `useChat`'s body (server/ui_messages.py); the chat id is our session id
  (client-chosen: an unknown one is created for the caller's key). `regenerate-message` answers
  the last user message again, the old answer kept but superseded. `submit-message` with a
  `messageId` (useChat's `sendMessage({ text, messageId })`) edits that user message: the chat
  is cut back to it (the rest kept, superseded), its text replaced, and answered again; the id
  is ours (from `/messages`) or the one the page gave the message (stored as `ui_id`).
- `GET /api/ui/chat/{id}/stream`: the resume `useChat` derives from its `api`: the chat's
  active stream replayed from its start and followed live, on any replica (the session
  records its stream; the log is shared); 204 when nothing runs for that chat.
- `POST /api/ui/chat/{id}/stop`: cancels the active stream (a disconnect does not: closing a
  tab leaves the answer running, `disconnect_grace_s`); the partial answer stays stored.
- `GET /api/ui/chat/{id}/messages`: the session as UIMessages, for a page that reloads (none
  for a chat that does not exist yet).
- `GET /api/ui/streams/{stream_id}`: any stream of the caller's (a planner's, a chat's) from its
  start as UI message chunks, for `DefaultChatTransport`'s `prepareReconnectToStreamRequest`;
  204 when it is unknown, expired or another key's.

Every stream is the one chat pipeline read from the log through `UIMessageStreamEncoder`, the
same SSE response as the native routes with another encoder. Errors found before the stream
starts are our JSON errors with their HTTP status, as on the native routes.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse, Response

from tokenrelay.pipelines.chat import ChatTurn
from tokenrelay.server.deps import (
    get_services,
    owner_of,
    prepare_turn,
    start_chat_turn,
    trace_id_for,
)
from tokenrelay.server.json_checks import CheckedRoute
from tokenrelay.server.limits import reading_slot
from tokenrelay.server.locale import use_request_locale
from tokenrelay.server.resume import in_the_streams_language
from tokenrelay.server.schemas import ID_PATTERN, ChatRequest
from tokenrelay.server.sse import EventStreamResponse
from tokenrelay.server.ui_messages import UIChatRequest, last_user_text, to_ui_messages
from tokenrelay.server.ui_stream_format import UI_STREAM_HEADERS, UIMessageStreamEncoder
from tokenrelay.services import Services
from tokenrelay.sessions.base import (
    StoredMessage,
    is_superseded,
    not_editable,
    nothing_to_regenerate,
    session_not_found,
)
from tokenrelay.streams.log import StreamInfo

router = APIRouter(route_class=CheckedRoute, tags=["ui"])

_HEADERS = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in UI_STREAM_HEADERS.items()]


def ui_stream_response(
    services: Services, stream_id: str, *, trace_id: str | None, starts: bool = False
) -> EventStreamResponse:
    """A stream from its first event, as UI message chunks; `starts`: this request started
    it, so an error before its first event is the HTTP status (`stream_start_wait_s`), which
    `useChat` reports as its error."""
    return EventStreamResponse(
        services,
        stream_id,
        trace_id=trace_id,
        encoder=UIMessageStreamEncoder(),
        headers=_HEADERS,
        start_wait_s=services.settings.stream_start_wait_s if starts else 0.0,
    )


async def _running_stream(services: Services, session_id: str, owner: str | None) -> str | None:
    """The chat's active stream while it has not finished (in the shared log), else None;
    None too for a session that is unknown or another key's."""
    running = await _running(services, session_id, owner)
    return None if running is None else running.stream_id


async def _running(services: Services, session_id: str, owner: str | None) -> StreamInfo | None:
    """`_running_stream`'s stream, with what the log knows of it."""
    info = await services.sessions.get_session(session_id, owner=owner)
    if info is None or info.active_stream_id is None:
        return None
    stream = await services.log.info(info.active_stream_id)
    if stream is None or stream.finished or stream.owner != owner:
        return None
    return stream


async def _current_users(
    services: Services, session_id: str, owner: str | None
) -> list[StoredMessage]:
    """The chat's user messages the model still sees; SESSION_NOT_FOUND for an unknown chat."""
    if await services.sessions.get_session(session_id, owner=owner) is None:
        raise session_not_found(session_id)
    return [
        m
        for m in await services.sessions.messages(session_id)
        if m.role == "user" and not is_superseded(m)
    ]


def _edited(users: list[StoredMessage], message_id: str) -> StoredMessage | None:
    """The user message `useChat` names: by our id (a page that loaded the chat from
    `/messages`), or by the id the page gave it when it sent it (`ui_id`)."""
    named = [m for m in users if message_id in (m.id, m.metadata.get("ui_id"))]
    return named[-1] if named else None


async def _replacing_turn(
    services: Services,
    session_id: str,
    message: str,
    body: UIChatRequest,
    *,
    trace_id: str,
    owner: str | None,
) -> ChatTurn:
    """A turn that replaces the chat's last answer: an answer still running is stopped first
    (it is the one being replaced)."""
    running = await _running_stream(services, session_id, owner)
    if running is not None:
        await services.runner.cancel(running, "request")
    request = ChatRequest(message=message, session_id=session_id, options=body.options)
    # the stopped answer may still be ending on another replica: this turn takes its place
    turn = await prepare_turn(services, request, trace_id=trace_id, owner=owner, replacing=running)
    return dataclasses.replace(turn, create_session=False)


async def _regenerate_turn(
    services: Services, body: UIChatRequest, *, trace_id: str, owner: str | None
) -> ChatTurn:
    """A new answer to the session's last user message."""
    users = await _current_users(services, body.id, owner)
    if not users:
        raise nothing_to_regenerate(body.id)
    turn = await _replacing_turn(
        services, body.id, users[-1].content, body, trace_id=trace_id, owner=owner
    )
    return dataclasses.replace(turn, regenerate=True)


async def _edit_turn(
    services: Services, body: UIChatRequest, *, trace_id: str, owner: str | None
) -> ChatTurn:
    """`sendMessage({ text, messageId })`: the user message `messageId` said again with the
    last message's text; the conversation from it on is kept, superseded (versions), and
    answered anew. VALIDATION_ERROR (`details.param`: `messageId`) when it names no current
    user message of the chat."""
    assert body.messageId is not None
    text = last_user_text(body.messages)
    edited = _edited(await _current_users(services, body.id, owner), body.messageId)
    if edited is None:
        raise not_editable(body.id, body.messageId, param="messageId")
    turn = await _replacing_turn(services, body.id, text, body, trace_id=trace_id, owner=owner)
    return dataclasses.replace(turn, edit_of=edited.id, user_metadata=_ui_id(body))


def _ui_id(body: UIChatRequest) -> dict[str, Any] | None:
    """The new user message's metadata: the id `useChat` gave it (which its edits name)."""
    given = body.messages[-1].id
    return {"ui_id": given} if given else None


@router.post(
    "/api/ui/chat",
    summary="useChat's backend: an answer as the AI SDK's UI message stream",
    response_class=Response,
)
async def ui_chat(body: UIChatRequest, request: Request) -> Response:
    services = get_services(request)
    owner, trace_id = owner_of(request), trace_id_for(request)
    use_request_locale(body.options.locale)  # the errors below too are in the chat's language
    if body.trigger == "regenerate-message":
        turn = await _regenerate_turn(services, body, trace_id=trace_id, owner=owner)
    elif body.messageId is not None:
        turn = await _edit_turn(services, body, trace_id=trace_id, owner=owner)
    else:
        asked = ChatRequest(
            message=last_user_text(body.messages), session_id=body.id, options=body.options
        )
        turn = await prepare_turn(services, asked, trace_id=trace_id, owner=owner)
        turn = dataclasses.replace(turn, user_metadata=_ui_id(body))
    await start_chat_turn(request, services, turn)
    return ui_stream_response(services, turn.stream_id, trace_id=trace_id, starts=True)


@router.get(
    "/api/ui/chat/{chat_id}/stream",
    summary="Resume the chat's answer in progress: replayed from its start, then live",
    responses={204: {"description": "no answer is in progress for this chat"}},
    response_class=Response,
)
async def ui_chat_resume(request: Request, chat_id: str = Path(pattern=ID_PATTERN)) -> Response:
    services = get_services(request)
    running = await _running(services, chat_id, owner_of(request))
    if running is None:
        return Response(status_code=204)
    stream_id = running.stream_id
    in_the_streams_language(running)
    # a running stream: the reading rides on the stream's own slot (server/resume.py)
    services.metrics.resumes.inc()
    return ui_stream_response(services, stream_id, trace_id=trace_id_for(request))


@router.get(
    "/api/ui/streams/{stream_id}",
    summary="Any of your streams, from its start, as UI message chunks",
    responses={204: {"description": "the stream is unknown, expired or another key's"}},
    response_class=Response,
)
async def ui_stream(request: Request, stream_id: str = Path(pattern=ID_PATTERN)) -> Response:
    services = get_services(request)
    info = await services.log.info(stream_id)
    if info is None or info.owner != owner_of(request):
        return Response(status_code=204)
    in_the_streams_language(info)
    # a replay of a finished stream holds a per-client slot (server/resume.py)
    release = await reading_slot(request) if info.finished else None
    response = ui_stream_response(services, stream_id, trace_id=trace_id_for(request))
    response.on_close = release
    return response


@router.post("/api/ui/chat/{chat_id}/stop", summary="Stop the chat's answer in progress")
async def ui_chat_stop(request: Request, chat_id: str = Path(pattern=ID_PATTERN)) -> Response:
    services = get_services(request)
    owner = owner_of(request)
    info = await services.sessions.get_session(chat_id, owner=owner)
    if info is None:
        raise session_not_found(chat_id)
    stream_id = await _running_stream(services, chat_id, owner)
    cancelled = False
    if stream_id is not None:
        cancelled = await services.runner.cancel(stream_id, "request")
    if info.active_stream_id is not None:
        await services.sessions.clear_active_stream(chat_id, info.active_stream_id)
    body: dict[str, Any] = {"session_id": chat_id, "stream_id": stream_id, "cancelled": cancelled}
    return JSONResponse(body)


@router.get("/api/ui/chat/{chat_id}/messages", summary="The chat as the AI SDK's UIMessages")
async def ui_chat_messages(
    request: Request, chat_id: str = Path(pattern=ID_PATTERN)
) -> dict[str, Any]:
    """A chat that does not exist yet (or is another key's: the same answer, which reveals
    nothing) has no messages: a page opening a new chat gets no error to log."""
    services = get_services(request)
    info = await services.sessions.get_session(chat_id, owner=owner_of(request))
    if info is None:
        return {"id": chat_id, "messages": []}
    messages = await services.sessions.messages(chat_id)
    return {"id": chat_id, "messages": to_ui_messages(messages)}
