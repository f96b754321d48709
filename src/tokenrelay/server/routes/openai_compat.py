"""The OpenAI-compatible API: `POST /v1/chat/completions` and `GET /v1/models`.

Built on the same pipeline as the native endpoints (stateless turns: the client sends the whole
conversation, nothing is stored). Streams end with `data: [DONE]`; an error after the stream
started is sent as a `{"error": {...}}` data chunk, then `[DONE]`, which is what the official
SDK raises on. Every error of these routes, validation included, is in OpenAI's error shape:
`OpenAIRoute` converts them here, so the native routes keep their own shape.

Which provider serves a request follows `openai_format.resolve_model`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from tokenrelay.delivery.reader import read_events
from tokenrelay.errors import ErrorCode, TokenRelayError, internal_error
from tokenrelay.pipelines.chat import ChatTurn, chat_pipeline
from tokenrelay.server.deps import get_services, owner_of, start_stream, trace_id_for
from tokenrelay.server.json_checks import CheckedRoute
from tokenrelay.server.openai_format import (
    ChatCompletionRequest,
    ChunkTranslator,
    CompletionAccumulator,
    error_body,
    last_user_text,
    model_entry,
    openai_status,
    resolve_model,
    to_chat_messages,
    to_tool_choice,
    to_tool_specs,
)
from tokenrelay.server.sse import EventStreamResponse
from tokenrelay.services import Services
from tokenrelay.sessions.base import new_id

logger = logging.getLogger("tokenrelay.server.openai")
_STARTED = int(time.time())


def openai_error_response(exc: TokenRelayError, param: str | None = None) -> JSONResponse:
    """One of our errors, answered in OpenAI's error shape and HTTP status."""
    if param is None and isinstance(exc.details, dict):
        given = exc.details.get("param")
        param = given if isinstance(given, str) else None
    headers: dict[str, str] = {}
    if exc.retry_after_s is not None:
        headers["Retry-After"] = str(max(1, int(exc.retry_after_s + 0.999)))
    return JSONResponse(
        error_body(exc.code.value, exc.message, suggestion=exc.suggestion, param=param),
        status_code=openai_status(exc.code.value, exc.http_status),
        headers=headers,
    )


def _validation_response(exc: RequestValidationError) -> JSONResponse:
    errors = list(exc.errors())
    first: dict[str, Any] = errors[0] if errors else {}
    loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
    param = ".".join(loc) or None
    if first.get("type") == "json_invalid":
        message, param = "the request body is not valid JSON", None
    elif first.get("type") == "missing":
        message = f"missing required parameter {param!r}"
    else:
        message = f"{param}: {first.get('msg', 'invalid value')}" if param else "invalid request"
    body = error_body(
        ErrorCode.VALIDATION_ERROR.value,
        message,
        suggestion="fix the request as described; see the OpenAI Chat Completions reference",
        param=param,
    )
    return JSONResponse(body, status_code=400)


class OpenAIRoute(CheckedRoute):
    """Answers this router's errors in OpenAI's shape instead of the app-wide handlers'."""

    native = False  # OpenAI's rules for spellings and query parameters, not ours

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                return _validation_response(exc)
            except TokenRelayError as exc:
                return openai_error_response(exc)
            except Exception as exc:
                logger.exception("unhandled error on %s %s", request.method, request.url.path)
                return openai_error_response(internal_error(exc))

        return route


router = APIRouter(route_class=OpenAIRoute, tags=["openai"])


def _turn(services: Services, body: ChatCompletionRequest, request: Request) -> ChatTurn:
    """Validate and map a Chat Completions request to a stateless turn (raises our errors)."""
    provider, model = resolve_model(
        body.model, services.providers.names(), services.settings.provider
    )
    services.providers.check(provider)
    messages = to_chat_messages(body.messages)
    extras = body.tokenrelay
    extra: dict[str, Any] = {}
    if extras is not None and extras.scripted is not None:
        extra["scripted"] = extras.scripted.model_dump(exclude_unset=True)
    return ChatTurn(
        stream_id=new_id(),
        trace_id=trace_id_for(request),
        message=last_user_text(messages),
        provider=provider,
        model=model,
        temperature=body.temperature,
        max_tokens=body.token_limit,
        owner=owner_of(request),
        extra=extra,
        messages=messages,
        client_tools=to_tool_specs(body.tools),
        tool_choice=to_tool_choice(body.tool_choice),
        response_format=body.response_format,
    )


@router.post("/v1/chat/completions", summary="OpenAI-compatible Chat Completions")
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
    services = get_services(request)
    turn = _turn(services, body, request)
    await start_stream(
        request, turn.stream_id, partial(chat_pipeline, services, turn), owner=turn.owner
    )
    created = int(time.time())
    trace = {"X-Trace-ID": turn.trace_id}
    if body.stream:
        translator = ChunkTranslator(
            turn.stream_id, created, body.model, include_usage=body.include_usage
        )
        # our SSE response, with OpenAI's chunks for its encoder: the same pushes, pings and
        # disconnects as the native stream (sse-starlette here cost several times the CPU
        # per token: docs/benchmarks.md)
        return EventStreamResponse(
            services,
            turn.stream_id,
            trace_id=turn.trace_id,
            encoder=translator,
            start_wait_s=services.settings.stream_start_wait_s,
        )
    result = CompletionAccumulator(turn.stream_id, created, body.model)
    events = read_events(services.runner, services.log, turn.stream_id)
    try:
        async for env in events:
            result.add(env.type, orjson.loads(env.data))
    finally:
        await events.aclose()
    if result.error is not None:
        code = ErrorCode(result.error.get("code", ErrorCode.INTERNAL_ERROR.value))
        err = TokenRelayError(
            str(result.error.get("message", "")),
            suggestion=str(result.error.get("suggestion", "")),
            retry_after_s=result.error.get("retry_after_s"),
            code=code,
        )
        response = openai_error_response(err)
        response.headers.update(trace)
        return response
    return JSONResponse(result.response(), headers=trace)


@router.get("/v1/models", summary="OpenAI-compatible model list")
async def list_models(request: Request) -> dict[str, Any]:
    """Every provider by name, and `provider/model` for the providers already running."""
    services = get_services(request)
    default = services.settings.provider
    names = services.providers.names()
    ids: list[tuple[str, str]] = [(default, default)]
    loaded = services.providers.loaded()
    for name in [default, *sorted(loaded)]:
        provider = loaded.get(name)
        if provider is not None:
            ids.append((f"{name}/{provider.default_model}", name))
    ids.extend((name, name) for name in names)
    seen: set[str] = set()
    data = []
    for model_id, owner in ids:
        if model_id not in seen:
            seen.add(model_id)
            data.append(model_entry(model_id, f"tokenrelay:{owner}", _STARTED))
    return {"object": "list", "data": data}
