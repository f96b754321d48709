"""The OpenAI Responses API: `POST /v1/responses` (streamed or not) and
`GET /v1/responses/{id}`.

One more encoder over the same pipeline and stream log as every other route: the request
becomes a `ChatTurn`, `start_stream` runs it, and the stream is our SSE response with
`ResponsesEncoder` for its frames (`responses_format.py`). `store` (OpenAI's default: true)
maps onto our sessions: a stored response is a session turn (its last user message, the tool
results it was given, and the answer), its id names the session and the answer, and
`previous_response_id` continues that session with its history. `item_reference`s to items of
stored responses are looked up in the same way.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from tokenrelay.pipelines.chat import ChatTurn
from tokenrelay.providers.base import ChatMessage
from tokenrelay.server.deps import get_services, owner_of, trace_id_for
from tokenrelay.server.openai_format import last_user_text
from tokenrelay.server.responses_format import (
    ResponseAccumulator,
    ResponseBuilder,
    ResponsesEncoder,
)
from tokenrelay.server.responses_request import (
    ResponsesRequest,
    StoredRef,
    check_supported,
    echo_of,
    invalid,
    item_ref,
    references_in,
    stored_ref,
    to_chat_messages,
    to_response_format,
    to_tool_choice,
    to_tool_specs,
)
from tokenrelay.server.routes.openai_common import (
    OpenAIRoute,
    check_sampling,
    collected,
    not_found_response,
    provider_extra,
    resolve_model,
    start_turn,
    streamed,
)
from tokenrelay.server.turn_guard import free_or_stale
from tokenrelay.services import Services
from tokenrelay.sessions.base import StoredMessage, new_id
from tokenrelay.sessions.history import to_chat_message

router = APIRouter(route_class=OpenAIRoute, tags=["openai"])


async def _session(
    services: Services, ref: StoredRef, owner: str | None
) -> list[StoredMessage] | None:
    """The messages of a stored response's session, if the caller may read it."""
    if await services.sessions.get_session(ref.session_id, owner=owner) is None:
        return None
    return await services.sessions.messages(ref.session_id)


def _turn_of(messages: list[StoredMessage], message_id: str) -> list[StoredMessage] | None:
    """The stored messages of one response: its first answer message up to the next user
    message (tool rounds make several)."""
    for i, m in enumerate(messages):
        if m.id == message_id and m.role == "assistant":
            end = next(
                (j for j in range(i + 1, len(messages)) if messages[j].role == "user"),
                len(messages),
            )
            return messages[i:end]
    return None


def stored_response(
    ref: StoredRef, turn: list[StoredMessage], echo: dict[str, Any] | None = None
) -> ResponseBuilder:
    """A stored response, rebuilt from its session messages."""
    first = turn[0]
    meta = first.metadata
    builder = ResponseBuilder(str(meta.get("stream_id") or ""), int(first.created_at), "")
    if echo is not None:
        builder.echo = echo
    builder.start(
        {"model": meta.get("model"), "session_id": ref.session_id, "message_id": ref.message_id}
    )
    last = first
    for m in turn:
        if m.role != "assistant":
            continue
        last = m
        if m.content:
            builder.text(m.content)
        for call in m.metadata.get("tool_calls", []):
            builder.tool_call(
                {"call_id": call["id"], "tool": call["name"], "args": call.get("arguments")}
            )
    if last.status == "complete":
        builder.finish(
            {
                "finish_reason": last.metadata.get("finish_reason"),
                "usage": last.metadata.get("usage"),
            }
        )
    elif last.status != "streaming":
        builder.fail({"code": "INTERNAL_ERROR", "message": f"the answer was {last.status}"})
    return builder


async def _find(
    services: Services, ref: StoredRef, owner: str | None
) -> tuple[list[StoredMessage], list[StoredMessage]] | None:
    """(the session's messages, the response's own) of a stored response."""
    messages = await _session(services, ref, owner)
    turn = _turn_of(messages, ref.message_id) if messages is not None else None
    if messages is None or turn is None:
        return None
    return messages, turn


async def _references(
    services: Services, ids: list[str], owner: str | None
) -> dict[str, dict[str, Any]]:
    """The items `item_reference`s name (items of stored responses); unknown ones are left
    out (the mapping then names them)."""
    found: dict[str, dict[str, Any]] = {}
    for item_id in ids:
        located = item_ref(item_id)
        if located is None or item_id in found:
            continue
        ref, index = located
        stored = await _find(services, ref, owner)
        if stored is None:
            continue
        output = stored_response(ref, stored[1]).output
        if index < len(output):
            found[item_id] = output[index]
    return found


async def _previous(
    services: Services, response_id: str, owner: str | None
) -> tuple[str, list[ChatMessage]]:
    """The session and the history that `previous_response_id` continues."""
    ref = stored_ref(response_id)
    stored = await _find(services, ref, owner) if ref is not None else None
    if ref is None or stored is None:
        raise invalid(
            f"no stored response {response_id!r}",
            "previous_response_id",
            "continue a response that was stored (store: true), with the same API key",
        )
    messages, turn = stored
    if messages[-1] is not turn[-1]:
        raise invalid(
            f"response {response_id!r} is not the latest of its conversation",
            "previous_response_id",
            "continue from the latest response (tokenrelay's conversations do not branch)",
        )
    history: list[ChatMessage] = []
    for m in messages:
        message = to_chat_message(m)
        if message is not None and not (message.role == "user" and not message.content):
            history.append(message)
    return ref.session_id, history


async def _turn(services: Services, body: ResponsesRequest, request: Request) -> ChatTurn:
    """Validate and map a Responses request to a turn (raises our errors)."""
    check_supported(body)
    provider, model = resolve_model(services, body.model)
    check_sampling(services, provider, {"temperature": body.temperature, "top_p": body.top_p})
    owner = owner_of(request)
    store = body.store is not False
    references = await _references(services, references_in(body.input), owner)
    new = to_chat_messages(body.input, None, references)
    if not new:
        raise invalid("input is empty", "input", "send a message in input")
    session_id: str | None = None
    history: list[ChatMessage] = []
    if body.previous_response_id:
        session_id, history = await _previous(services, body.previous_response_id, owner)
    if store and session_id is not None:
        for m in new:
            if m.role == "tool":  # the results of the previous response's calls
                metadata = {"call_id": m.tool_call_id}
                await services.sessions.add_message(
                    session_id, "tool", m.content, metadata=metadata
                )
    takeover = None  # one turn at a time on the stored session (server/turn_guard.py)
    if store and session_id is not None:
        takeover = await free_or_stale(services, session_id, owner)
    system = [ChatMessage("system", body.instructions)] if body.instructions else []
    messages = (*system, *history, *new)
    return ChatTurn(
        stream_id=new_id(),
        trace_id=trace_id_for(request),
        message=last_user_text(tuple(new)),
        provider=provider,
        session_id=session_id,
        model=model,
        temperature=body.temperature,
        top_p=body.top_p,
        max_tokens=body.max_output_tokens,
        owner=owner,
        extra=provider_extra(body.tokenrelay),
        messages=messages,
        client_tools=to_tool_specs(body.tools),
        tool_choice=to_tool_choice(body.tool_choice),
        response_format=to_response_format(body.text),
        store=store,
        takeover=takeover,
    )


@router.post("/v1/responses", summary="OpenAI Responses API")
async def create_response(body: ResponsesRequest, request: Request) -> Response:
    services = get_services(request)
    turn = await _turn(services, body, request)
    await start_turn(request, services, turn)
    builder = ResponseBuilder(turn.stream_id, int(time.time()), body.model, echo_of(body))
    if body.stream:
        return streamed(services, turn, ResponsesEncoder(builder))
    return await collected(services, turn, ResponseAccumulator(builder))


@router.get("/v1/responses/{response_id}", summary="A stored response")
async def get_response(response_id: str, request: Request) -> Response:
    services = get_services(request)
    ref = stored_ref(response_id)
    stored = await _find(services, ref, owner_of(request)) if ref is not None else None
    if ref is None or stored is None:
        return not_found_response(
            f"Response with id {response_id!r} not found.", param="response_id"
        )
    return JSONResponse(stored_response(ref, stored[1]).response())
