"""The chat pipeline: session → generation → persist → done, as an async generator of events.

It knows nothing of HTTP. Whatever way it ends — done, provider failure, timeout, cancel —
the answer so far is stored with a status that says how it ended, before the terminal event.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from tokenrelay.events import DoneEvent, MetadataEvent, TokenEvent, UsageInfo
from tokenrelay.pipelines.answer import Answer
from tokenrelay.providers.base import ProviderRequest, TextDelta
from tokenrelay.services import Services
from tokenrelay.sessions.base import MessageStatus
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


async def chat_pipeline(services: Services, turn: ChatTurn) -> AsyncIterator[Any]:
    settings = services.settings
    started = time.monotonic()
    provider = services.providers.get(turn.provider)
    model = turn.model or provider.default_model
    start = await services.sessions.start_turn(turn.session_id, turn.message, owner=turn.owner)
    yield MetadataEvent(
        stream_id=turn.stream_id,
        session_id=start.session_id,
        message_id=start.assistant_message_id,
        trace_id=turn.trace_id,
        provider=provider.name,
        model=model,
    )
    request = ProviderRequest(
        messages=tuple(
            build_messages(
                settings.system_prompt, start.history, turn.message, settings.history_token_budget
            )
        ),
        model=turn.model,
        temperature=turn.temperature if turn.temperature is not None else settings.temperature,
        max_tokens=turn.max_tokens or settings.max_tokens,
        extra=turn.extra,
    )
    answer = Answer()
    ttft: float | None = None
    last_token_at = 0.0
    status: MessageStatus = "failed"
    history_length = 0
    metrics = services.metrics
    events = with_idle_timeout(provider.stream(request), settings.idle_timeout_s)
    if settings.coalesce_ms > 0:
        events = coalesce_text(events, settings.coalesce_ms / 1000.0)
    try:
        async for event in events:
            answer.add(event)
            if isinstance(event, TextDelta) and event.text:
                now = time.monotonic()
                if ttft is None:
                    ttft = now - started
                    metrics.ttft.labels(provider.name).observe(ttft)
                else:
                    metrics.token_gap.labels(provider.name).observe(now - last_token_at)
                last_token_at = now
                yield TokenEvent(content=event.text, index=answer.chunks - 1)
        status = "complete"
    except (asyncio.CancelledError, GeneratorExit):
        status = "interrupted"
        raise
    except BaseException as exc:
        code = str(getattr(getattr(exc, "code", None), "value", "INTERNAL_ERROR"))
        metrics.provider_errors.labels(provider.name, code).inc()
        status = "interrupted" if code == "TIMEOUT" else "failed"
        raise
    finally:
        metadata = {
            "finish_reason": answer.finish_reason,
            "usage": {
                "prompt_tokens": answer.prompt_tokens,
                "completion_tokens": answer.completion_tokens,
            },
            "provider": provider.name,
            "model": model,
            "stream_id": turn.stream_id,
        }
        history_length = await asyncio.shield(
            services.sessions.finish_turn(start.assistant_message_id, answer.text, status, metadata)
        )
        metrics.tokens.labels(provider.name).inc(answer.completion_tokens)
        metrics.stream_duration.labels(provider.name).observe(time.monotonic() - started)
    yield DoneEvent(
        session_id=start.session_id,
        message_id=start.assistant_message_id,
        finish_reason=answer.finish_reason or "stop",
        usage=UsageInfo(
            prompt_tokens=answer.prompt_tokens, completion_tokens=answer.completion_tokens
        ),
        total_chunks=answer.chunks,
        ttft_s=round(ttft, 6) if ttft is not None else None,
        processing_time_s=round(time.monotonic() - started, 6),
        history_length=history_length,
    )
