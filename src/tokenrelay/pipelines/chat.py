"""The chat pipeline: session → retrieval → generation → persist → done, as events.

It knows nothing of HTTP. Whatever way it ends — done, provider failure, timeout, cancel —
the answer so far is stored with a status that says how it ended, before the terminal event.

Two kinds of turn: a session turn (our API: one new message, history from the session store)
and a stateless turn (`ChatTurn.messages`, the OpenAI-compatible API: the client sends the
whole conversation and nothing is stored).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from tokenrelay.events import (
    DoneEvent,
    MetadataEvent,
    SourcesEvent,
    TokenEvent,
    ToolCallEvent,
    UsageInfo,
)
from tokenrelay.pipelines.answer import Answer
from tokenrelay.pipelines.retrieval_step import RagRequest, Retrieved, retrieve
from tokenrelay.providers.base import (
    ChatMessage,
    Provider,
    ProviderRequest,
    TextDelta,
    ToolCallPart,
    ToolSpec,
)
from tokenrelay.services import Services
from tokenrelay.sessions.base import MessageStatus, TurnStart
from tokenrelay.sessions.history import build_messages
from tokenrelay.streams.pacing import coalesce_text, with_idle_timeout


@dataclass(frozen=True)
class ChatTurn:
    """One validated chat request, ready to run."""

    stream_id: str
    trace_id: str
    message: str
    provider: str
    session_id: str | None = None
    model: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    owner: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    rag: RagRequest | None = None
    # stateless turns: the whole conversation, nothing stored
    messages: tuple[ChatMessage, ...] | None = None
    # tools the *client* runs (OpenAI semantics): calls are streamed out, not executed
    client_tools: tuple[ToolSpec, ...] = ()
    tool_choice: str | None = None
    response_format: dict[str, Any] | None = None


@dataclass
class _Timing:
    started: float = field(default_factory=time.monotonic)
    ttft: float | None = None
    last_token: float = 0.0


async def chat_pipeline(services: Services, turn: ChatTurn) -> AsyncIterator[Any]:
    settings = services.settings
    timing = _Timing()
    provider = services.providers.get(turn.provider)
    model = turn.model or provider.default_model
    start = await _start(services, turn)
    yield MetadataEvent(
        stream_id=turn.stream_id,
        session_id=start.session_id,
        message_id=start.assistant_message_id,
        trace_id=turn.trace_id,
        provider=provider.name,
        model=model,
    )
    retrieved: Retrieved | None = None
    if turn.rag is not None:
        retrieved = await retrieve(services, turn.message, start.history, turn.rag)
        if retrieved is not None:
            yield SourcesEvent.model_validate({"documents": retrieved.sources})
    if turn.messages is not None:
        messages = list(turn.messages)
    else:
        system = retrieved.system_prompt if retrieved else settings.system_prompt
        messages = build_messages(
            system, start.history, turn.message, settings.history_token_budget
        )
    request = ProviderRequest(
        messages=tuple(messages),
        model=turn.model,
        temperature=turn.temperature if turn.temperature is not None else settings.temperature,
        max_tokens=turn.max_tokens or settings.max_tokens,
        tools=turn.client_tools,
        tool_choice=turn.tool_choice,
        response_format=turn.response_format,
        extra=turn.extra,
    )
    answer = Answer()
    status: MessageStatus = "failed"
    history_length = len(messages) + 1
    try:
        async for event in _generate(services, provider, request, answer, timing):
            yield event
        status = "complete"
    except (asyncio.CancelledError, GeneratorExit):
        status = "interrupted"
        raise
    except BaseException as exc:
        code = str(getattr(getattr(exc, "code", None), "value", "INTERNAL_ERROR"))
        services.metrics.provider_errors.labels(provider.name, code).inc()
        status = "interrupted" if code == "TIMEOUT" else "failed"
        raise
    finally:
        if turn.messages is None:
            metadata = _answer_metadata(answer, provider.name, model, turn, retrieved)
            history_length = await asyncio.shield(
                services.sessions.finish_turn(
                    start.assistant_message_id, answer.text, status, metadata
                )
            )
        services.metrics.tokens.labels(provider.name).inc(answer.completion_tokens)
        services.metrics.stream_duration.labels(provider.name).observe(
            time.monotonic() - timing.started
        )
    yield DoneEvent.model_validate(
        {
            "session_id": start.session_id,
            "message_id": start.assistant_message_id,
            "finish_reason": answer.finish_reason or "stop",
            "usage": UsageInfo(
                prompt_tokens=answer.prompt_tokens, completion_tokens=answer.completion_tokens
            ),
            "total_chunks": answer.chunks,
            "ttft_s": round(timing.ttft, 6) if timing.ttft is not None else None,
            "processing_time_s": round(time.monotonic() - timing.started, 6),
            "history_length": history_length,
            "sources": retrieved.sources if retrieved else None,
        }
    )


async def _start(services: Services, turn: ChatTurn) -> TurnStart:
    if turn.messages is not None:
        return TurnStart("", "", uuid.uuid4().hex, [])
    return await services.sessions.start_turn(turn.session_id, turn.message, owner=turn.owner)


async def _generate(
    services: Services,
    provider: Provider,
    request: ProviderRequest,
    answer: Answer,
    timing: _Timing,
) -> AsyncIterator[Any]:
    """One provider round: text becomes `token` events, tool calls `tool_call` events."""
    settings = services.settings
    metrics = services.metrics
    events = with_idle_timeout(provider.stream(request), settings.idle_timeout_s)
    if settings.coalesce_ms > 0:
        events = coalesce_text(events, settings.coalesce_ms / 1000.0)
    async for event in events:
        answer.add(event)
        if isinstance(event, TextDelta) and event.text:
            now = time.monotonic()
            if timing.ttft is None:
                timing.ttft = now - timing.started
                metrics.ttft.labels(provider.name).observe(timing.ttft)
            else:
                metrics.token_gap.labels(provider.name).observe(now - timing.last_token)
            timing.last_token = now
            yield TokenEvent(content=event.text, index=answer.chunks - 1)
        elif isinstance(event, ToolCallPart):
            call = event.call
            yield ToolCallEvent(call_id=call.id, tool=call.name, args=call.arguments)


def _answer_metadata(
    answer: Answer, provider: str, model: str, turn: ChatTurn, retrieved: Retrieved | None
) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "finish_reason": answer.finish_reason,
        "usage": {
            "prompt_tokens": answer.prompt_tokens,
            "completion_tokens": answer.completion_tokens,
        },
        "provider": provider,
        "model": model,
        "stream_id": turn.stream_id,
    }
    if answer.tool_calls:
        metadata["tool_calls"] = [
            {"id": c.id, "name": c.name, "arguments": c.arguments} for c in answer.tool_calls
        ]
    if retrieved is not None:
        metadata["sources"] = retrieved.sources
    return metadata
