"""What the OpenAI-compatible routes share: errors in OpenAI's shape, starting a turn and
answering it (streamed, or collected into one JSON body), and the models that can answer now.

Every error of these routes, validation included, is in OpenAI's envelope
`{"error": {"message", "type", "param", "code"}}`: `OpenAIRoute` converts them here, so the
native routes keep their own shape.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Callable, Coroutine, Mapping
from functools import partial
from typing import Any, Protocol

import orjson
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from tokenrelay.delivery.encoders import Encoder
from tokenrelay.delivery.reader import read_events as delivery_events
from tokenrelay.errors import ErrorCode, TokenRelayError, ValidationError, internal_error
from tokenrelay.pipelines.chat import ChatTurn, chat_pipeline
from tokenrelay.providers.base import refused_sampling
from tokenrelay.server.deps import start_stream
from tokenrelay.server.json_checks import CheckedRoute
from tokenrelay.server.openai_format import (
    TokenRelayExtras,
    error_body,
    not_found_body,
    openai_status,
)
from tokenrelay.server.openai_models import ModelNotFound, Offered, available, resolve
from tokenrelay.server.sse import EventStreamResponse
from tokenrelay.services import Services

logger = logging.getLogger("tokenrelay.server.openai")


def openai_error_response(exc: TokenRelayError, param: str | None = None) -> JSONResponse:
    """One of our errors, answered in OpenAI's error shape and HTTP status."""
    if isinstance(exc, ModelNotFound):
        body = not_found_body(exc.message, code="model_not_found", param="model")
        return JSONResponse(body, status_code=404)
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


def error_of_event(data: dict[str, Any]) -> TokenRelayError:
    """Our `error` event's data back as an error (for a JSON answer's status and body)."""
    try:
        code = ErrorCode(data.get("code", ErrorCode.INTERNAL_ERROR.value))
    except ValueError:
        code = ErrorCode.INTERNAL_ERROR
    return TokenRelayError(
        str(data.get("message", "")),
        suggestion=str(data.get("suggestion", "")),
        retry_after_s=data.get("retry_after_s"),
        details=data.get("details"),
        code=code,
    )


def not_found_response(message: str, *, param: str | None = None) -> JSONResponse:
    return JSONResponse(not_found_body(message, param=param), status_code=404)


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
        suggestion="fix the request as described; see the OpenAI API reference",
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


async def read_events(
    services: Services, stream_id: str
) -> AsyncGenerator[tuple[str, dict[str, Any]], None]:
    """(type, data) of a stream's events, attached meanwhile (`delivery.reader.read_events`):
    leaving early tells the runner (→ cancel)."""
    events = delivery_events(services.runner, services.log, stream_id)
    try:
        async for env in events:
            yield env.type, orjson.loads(env.data)
    finally:
        await events.aclose()


class Collector(Protocol):
    """Our events in, one OpenAI JSON body out (a non-streamed answer)."""

    error: dict[str, Any] | None

    def add(self, kind: str, data: dict[str, Any]) -> None: ...

    def response(self) -> dict[str, Any]: ...


async def start_turn(request: Request, services: Services, turn: ChatTurn) -> None:
    """Start the chat pipeline for a mapped request (`deps.start_stream`)."""
    await start_stream(
        request, turn.stream_id, partial(chat_pipeline, services, turn), owner=turn.owner
    )


def streamed(services: Services, turn: ChatTurn, encoder: Encoder) -> EventStreamResponse:
    """The turn's stream in OpenAI's frames: our SSE response with `encoder`, so the same
    pushes, pings and disconnects as the native stream (sse-starlette here cost several times
    the CPU per token: docs/benchmarks.md)."""
    return EventStreamResponse(
        services,
        turn.stream_id,
        trace_id=turn.trace_id,
        encoder=encoder,
        start_wait_s=services.settings.stream_start_wait_s,
    )


async def collected(services: Services, turn: ChatTurn, result: Collector) -> Response:
    """The whole answer as `result`'s JSON body, or its error in OpenAI's shape."""
    events = read_events(services, turn.stream_id)
    try:
        async for kind, data in events:
            result.add(kind, data)
    finally:
        await events.aclose()
    trace = {"X-Trace-ID": turn.trace_id}
    if result.error is not None:
        response = openai_error_response(error_of_event(result.error))
        response.headers.update(trace)
        return response
    return JSONResponse(result.response(), headers=trace)


def provider_extra(extras: TokenRelayExtras | None) -> dict[str, Any]:
    """The provider options of a request's `tokenrelay` extension (the scripted script)."""
    if extras is not None and extras.scripted is not None:
        return {"scripted": extras.scripted.model_dump(exclude_unset=True)}
    return {}


def offered(services: Services) -> list[Offered]:
    providers = services.providers
    return available(services.settings, providers.names(), providers.loaded())


def check_sampling(services: Services, provider: str, asked: Mapping[str, object]) -> None:
    """OpenAI's 400 naming the first sampling parameter that `provider` cannot honour."""
    refused = refused_sampling(services.providers.get(provider), asked)
    if refused:
        raise ValidationError(
            f"{refused[0]} is not supported by the {provider} provider",
            suggestion=f"leave {refused[0]} out, or choose a model of a provider that has it"
            " (docs/client.md has the table)",
            details={"param": refused[0]},
        )


def resolve_model(services: Services, model: str) -> tuple[str, str | None]:
    """(provider, model) for a request's `model`, or ModelNotFound (OpenAI's 404)."""
    provider, name = resolve(model, services.settings, offered(services))
    services.providers.check(provider)
    return provider, name
