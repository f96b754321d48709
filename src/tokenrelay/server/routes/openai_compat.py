"""The OpenAI-compatible API: `POST /v1/chat/completions`, `GET /v1/models[/{id}]`, and the
Responses API's routes (`routes/openai_responses.py`, included here), then OpenAI's 404 for
any other path under `/v1`.

Built on the same pipeline as the native endpoints (stateless turns: the client sends the whole
conversation, nothing is stored). Streams end with `data: [DONE]`; an error after the stream
started is sent as a `{"error": {...}}` data chunk, then `[DONE]`, which is what the official
SDK raises on. Every error of these routes, validation included, is in OpenAI's error shape
(`openai_common.OpenAIRoute`), so the native routes keep their own shape.

Which provider serves a request follows `openai_models.resolve`: an unknown model is a 404.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from tokenrelay.pipelines.chat import ChatTurn
from tokenrelay.server.deps import get_services, owner_of, trace_id_for
from tokenrelay.server.openai_format import (
    ChatCompletionRequest,
    ChunkTranslator,
    CompletionAccumulator,
    check_supported,
    last_user_text,
    model_entry,
    not_found_body,
    to_chat_messages,
    to_tool_choice,
    to_tool_specs,
)
from tokenrelay.server.openai_models import model_ids
from tokenrelay.server.routes import openai_responses
from tokenrelay.server.routes.openai_common import (
    OpenAIRoute,
    check_sampling,
    collected,
    not_found_response,
    offered,
    provider_extra,
    resolve_model,
    start_turn,
    streamed,
)
from tokenrelay.services import Services
from tokenrelay.sessions.base import new_id

_STARTED = int(time.time())


router = APIRouter(route_class=OpenAIRoute, tags=["openai"])


def _turn(services: Services, body: ChatCompletionRequest, request: Request) -> ChatTurn:
    """Validate and map a Chat Completions request to a stateless turn (raises our errors)."""
    check_supported(body)
    provider, model = resolve_model(services, body.model)
    sampling = {
        "temperature": body.temperature,
        "top_p": body.top_p,
        "stop": body.stop_strings,
        "seed": body.seed,
        "frequency_penalty": body.frequency_penalty,
        "presence_penalty": body.presence_penalty,
    }
    check_sampling(services, provider, sampling)
    messages = to_chat_messages(body.messages)
    return ChatTurn(
        stream_id=new_id(),
        trace_id=trace_id_for(request),
        message=last_user_text(messages),
        provider=provider,
        model=model,
        temperature=body.temperature,
        top_p=body.top_p,
        stop=body.stop_strings,
        seed=body.seed,
        frequency_penalty=body.frequency_penalty,
        presence_penalty=body.presence_penalty,
        max_tokens=body.token_limit,
        owner=owner_of(request),
        extra=provider_extra(body.tokenrelay),
        messages=messages,
        client_tools=to_tool_specs(body.tools),
        tool_choice=to_tool_choice(body.tool_choice),
        response_format=body.response_format,
    )


@router.post("/v1/chat/completions", summary="OpenAI-compatible Chat Completions")
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
    services = get_services(request)
    turn = _turn(services, body, request)
    await start_turn(request, services, turn)
    created = int(time.time())
    if body.stream:
        translator = ChunkTranslator(
            turn.stream_id, created, body.model, include_usage=body.include_usage
        )
        return streamed(services, turn, translator)
    return await collected(
        services, turn, CompletionAccumulator(turn.stream_id, created, body.model)
    )


@router.get("/v1/models", summary="OpenAI-compatible model list")
async def list_models(request: Request) -> dict[str, Any]:
    """What can answer now (`openai_models.available`): each provider by name, as
    `provider/model`, and its default model's bare id."""
    ids = model_ids(offered(get_services(request)))
    data = [model_entry(i, f"tokenrelay:{owner}", _STARTED) for i, owner in ids]
    return {"object": "list", "data": data}


@router.get("/v1/models/{model_id:path}", summary="One model of the list")
async def get_model(model_id: str, request: Request) -> Response:
    for i, owner in model_ids(offered(get_services(request))):
        if i == model_id:
            return JSONResponse(model_entry(i, f"tokenrelay:{owner}", _STARTED))
    message = f"The model {model_id!r} does not exist or you do not have access to it."
    return JSONResponse(
        not_found_body(message, code="model_not_found", param="model"), status_code=404
    )


router.include_router(openai_responses.router)


@router.api_route(
    "/v1/{path:path}",
    methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
    include_in_schema=False,
)
async def unknown_url(path: str, request: Request) -> Response:
    """OpenAI's 404 for every other path under /v1 (after the routes above)."""
    return not_found_response(f"Invalid URL ({request.method} /v1/{path})")
