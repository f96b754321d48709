"""Request-scoped helpers shared by the routes: services, trace ids, turn preparation."""

from __future__ import annotations

import re
from functools import partial

from fastapi import Request
from fastapi.responses import Response

from tokenrelay.errors import ErrorCode, TokenRelayError, ValidationError
from tokenrelay.events import parse_event_id
from tokenrelay.i18n import tr
from tokenrelay.pipelines.chat import ChatTurn, chat_pipeline
from tokenrelay.pipelines.retrieval_step import RagRequest
from tokenrelay.providers.base import refused_sampling
from tokenrelay.server.error_responses import error_response
from tokenrelay.server.limits import limited_pipeline, raw_last_event_id
from tokenrelay.server.locale import use_request_locale
from tokenrelay.server.schemas import ChatOptions, ChatRequest, RagOptions
from tokenrelay.server.turn_guard import free_or_stale
from tokenrelay.services import Services
from tokenrelay.sessions.base import new_id, session_not_found
from tokenrelay.streams.context import Pipeline
from tokenrelay.streams.log import StreamInfo, not_found
from tokenrelay.tools.registry import registry_for

_TRACE_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def trace_id_for(request: Request) -> str:
    """Keep the caller's X-Trace-ID when it is sane, otherwise make one."""
    given = request.headers.get("x-trace-id")
    if given and _TRACE_ID.match(given):
        return given
    return new_id()


def owner_of(request: Request) -> str | None:
    """The API key's owner id once authentication is on (None: no keys configured)."""
    owner: str | None = getattr(request.state, "owner", None)
    return owner


def check_message(text: str, max_chars: int) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValidationError(
            tr("message holds text that is not valid Unicode (a lone surrogate such as \\ud800)"),
            suggestion=tr("send the message as valid UTF-8; escape pairs must be complete"),
        ) from exc
    if not text.strip():
        raise ValidationError(
            tr("message is empty"),
            suggestion=tr("send a message with at least one visible character"),
        )
    if len(text) > max_chars:
        raise ValidationError(
            tr(
                "message is {length} characters long; the limit is {limit}",
                length=len(text),
                limit=max_chars,
            ),
            suggestion=tr("shorten the message or split it over several turns"),
        )
    return text


async def prepare_turn(
    services: Services,
    body: ChatRequest,
    *,
    trace_id: str,
    owner: str | None,
    replacing: str | None = None,
) -> ChatTurn:
    """Validate everything that can be checked before the stream starts (→ plain HTTP errors),
    SESSION_BUSY included (server/turn_guard.py; `replacing`: a stream just stopped to be
    answered again, which the turn takes over)."""
    use_request_locale(body.options.locale)
    settings = services.settings
    message = check_message(body.message, settings.max_message_chars)
    options = body.options
    provider = options.provider or settings.provider
    services.providers.check(provider)
    if options.tools is not None:
        registry_for(settings).check(options.tools)
    refused = refused_sampling(services.providers.get(provider), options.sampling())
    if refused:
        param = f"options.{refused[0]}"
        raise ValidationError(
            tr(
                "{param} is not supported by the provider {provider!r}",
                param=param,
                provider=provider,
            ),
            suggestion=tr("leave {param} out, or choose a model that supports it", param=param),
            details={"param": param},
        )
    # a client-chosen id is the caller's to use unless another key owns it (created at start)
    if body.session_id is not None and not (
        await services.sessions.claimable(body.session_id, owner=owner)
    ):
        raise session_not_found(body.session_id)
    takeover = None
    if body.session_id is not None:
        takeover = await free_or_stale(services, body.session_id, owner, replacing=replacing)
    return ChatTurn(
        rag=rag_request(services, options),
        stream_id=new_id(),
        trace_id=trace_id,
        message=message,
        provider=provider,
        session_id=body.session_id,
        model=options.model,
        temperature=options.temperature,
        max_tokens=options.max_tokens,
        owner=owner,
        extra=options.provider_extra(),
        enable_tools=options.enable_tools,
        tool_names=tuple(options.tools) if options.tools is not None else None,
        create_session=True,
        system=options.system,
        top_p=options.top_p,
        stop=tuple(options.stop) if options.stop is not None else None,
        seed=options.seed,
        frequency_penalty=options.frequency_penalty,
        presence_penalty=options.presence_penalty,
        takeover=takeover,
    )


def rag_request(services: Services, options: ChatOptions) -> RagRequest | None:
    """Retrieval for this turn: asked for per request, or on by default in the settings."""
    settings = services.settings
    asked = options.rag
    if asked is False or (asked is None and not settings.rag_enabled):
        return None
    chosen = asked if isinstance(asked, RagOptions) else RagOptions()
    return RagRequest(
        top_k=chosen.top_k or settings.rag_top_k,
        min_score=chosen.min_score if chosen.min_score is not None else settings.rag_min_score,
        mode=chosen.mode,
    )


def resume_position(request: Request, stream_id: str | None = None) -> tuple[str, int] | None:
    """(stream_id, seq) from Last-Event-ID (header, or `last_event_id` query for EventSource).

    A blank id is no id. Read as the stream cap reads it (`limits.raw_last_event_id`), so a
    request the cap counted as a new stream never resumes, nor the other way round."""

    raw = raw_last_event_id(request.scope)
    if raw is None:
        return None
    try:
        sid, seq = parse_event_id(raw)
    except ValueError as exc:
        raise ValidationError(
            tr("Last-Event-ID {value!r} is not of the form <stream_id>:<seq>", value=raw),
            suggestion=tr("send back the id of the last event you received, unchanged"),
        ) from exc
    if stream_id is not None and sid != stream_id:
        raise ValidationError(
            tr("Last-Event-ID belongs to another stream"),
            suggestion=tr(
                "resume stream {stream_id} with one of its own event ids", stream_id=stream_id
            ),
        )
    return sid, seq


async def start_stream(
    request: Request,
    stream_id: str,
    pipeline: Pipeline,
    *,
    owner: str | None,
    session_id: str | None = None,
) -> None:
    """Start a pipeline on the runner, within the caller's running-stream limit.

    Every route that starts a stream goes through here, so the limit (429 before the stream
    starts) and its release (however the stream ends) are the same for all of them.
    """

    services = get_services(request)
    if not services.runner.accepting:
        close = getattr(pipeline, "aclose", None)
        if close is not None:
            await close()
        raise TokenRelayError(
            tr("this server is shutting down and takes no new streams"),
            suggestion=tr("retry in a moment"),
            code=ErrorCode.BACKEND_UNAVAILABLE,
            retryable=True,
            retry_after_s=1,
        )
    guarded = await limited_pipeline(request, pipeline)
    try:
        await services.runner.start(stream_id, guarded, owner=owner, session_id=session_id)
    except BaseException:
        close = getattr(guarded, "aclose", None)
        if close is not None:
            await close()
        raise


async def start_chat_turn(request: Request, services: Services, turn: ChatTurn) -> None:
    """Start the chat pipeline for a prepared turn (`start_stream`), under its session."""
    await start_stream(
        request,
        turn.stream_id,
        partial(chat_pipeline, services, turn),
        owner=turn.owner,
        session_id=turn.session_id,
    )


def wants_json(request: Request) -> bool:
    """Did the caller ask for JSON (Accept: application/json, not text/event-stream)?"""
    accept = request.headers.get("accept", "").lower()
    return "application/json" in accept and "text/event-stream" not in accept


def resume_end(
    info: StreamInfo | None, request: Request, stream_id: str, after_seq: int
) -> Response | None:
    """The answer to a resume that has nothing left to send, or None to send the stream.

    A stream that is unknown, expired or another key's, or finished with `after_seq` at or
    past its terminal event: `204 No Content` to EventSource-style callers (the WHATWG rule:
    an EventSource that gets 204 stops reconnecting), JSON 404 STREAM_NOT_FOUND to callers
    that ask for JSON. A finished stream resumed from before its end is replayed (None)."""
    gone = info is None or info.owner != owner_of(request)
    if not gone and not (info is not None and info.finished and after_seq >= info.last_seq):
        return None
    if wants_json(request):
        return error_response(not_found(stream_id))
    return Response(status_code=204)
