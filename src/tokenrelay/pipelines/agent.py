"""The agent loop: provider rounds, with server tools run between them.

Each round streams the provider: text becomes `token` events, each tool call a `tool_call`
event, emitted into the stream's context (`streams/context.py`) as they come. When a round
ends with calls of server tools, they run concurrently (one task each, children of the
pipeline's task, so a cancel reaches them); their `tool_progress` and `tool_result` events are
emitted as they happen, taken from a queue. The assistant message with the calls and one
`tool` message per result go back to the model, and the next round starts. After
`max_tool_rounds` rounds that ran tools, further calls are answered with an error result, a
`status` event says why, and the answer so far stands: never an endless loop.

Without server tools (`ToolSetup` None) this is one round, with client tools streamed as
`tool_call` events and not run (the OpenAI-compatible API's semantics).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from tokenrelay.events import (
    StatusEvent,
    ToolCallEvent,
    ToolProgressEvent,
    ToolResultEvent,
    token_json,
)
from tokenrelay.i18n import localize, tr
from tokenrelay.pipelines.answer import Answer
from tokenrelay.pipelines.needs import PipelineServices
from tokenrelay.providers.base import (
    ChatMessage,
    Provider,
    ProviderEvent,
    ProviderRequest,
    ToolCall,
    ToolCallPart,
    ToolSpec,
)
from tokenrelay.streams.context import StreamContext
from tokenrelay.streams.pacing import IdleWatchdog, aclose_quietly, coalesce_text
from tokenrelay.tools.context import ToolContext
from tokenrelay.tools.registry import ToolRegistry, registry_for
from tokenrelay.tools.runner import ToolOutcome, crashed, failed, run_tool

# providers whose tool calling is a constrained single JSON reply (no text alongside): they get
# server tools only when the request names them, and answer in free text after one tool round
SINGLE_SHOT_TOOL_PROVIDERS = frozenset({"local"})


@dataclass(slots=True)
class Timing:
    started: float = field(default_factory=time.monotonic)
    ttft: float | None = None
    last_token: float = 0.0


@dataclass(frozen=True, slots=True)
class ToolSetup:
    """The server tools offered in one turn."""

    registry: ToolRegistry
    specs: tuple[ToolSpec, ...]
    max_rounds: int
    timeout_s: float
    single_shot: bool = False
    owner: str | None = None  # whose turn: tools that read per-owner data use it

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.specs]


def tool_setup(
    services: PipelineServices,
    provider: Provider,
    *,
    enabled: bool,
    allow: Sequence[str] | None,
    client_tools: bool,
    owner: str | None = None,
) -> ToolSetup | None:
    """Which server tools this turn offers; None when none (off, client tools, or a provider
    that gets them only on request)."""
    if not enabled or client_tools:
        return None
    single_shot = provider.name in SINGLE_SHOT_TOOL_PROVIDERS
    if single_shot and allow is None:
        return None
    settings = services.settings
    registry = registry_for(settings)
    specs = registry.specs(allow)
    if not specs:
        return None
    return ToolSetup(
        registry=registry,
        specs=specs,
        max_rounds=settings.max_tool_rounds,
        timeout_s=settings.tool_timeout_s,
        single_shot=single_shot,
        owner=owner,
    )


class RoundRecorder(Protocol):
    """Persists a finished tool round (the session store, or nothing for stateless turns)."""

    async def round_done(
        self, text: str, calls: Sequence[ToolCall], outcomes: Sequence[ToolOutcome]
    ) -> None: ...

    def shown(self, event: ToolProgressEvent | StatusEvent) -> None:
        """An event the user sees while the answer streams (a tool's progress, a status),
        kept with the answer for its history."""
        ...


async def stream_round(
    services: PipelineServices,
    stream: StreamContext,
    provider: Provider,
    request: ProviderRequest,
    answer: Answer,
    timing: Timing,
) -> None:
    """One provider round: text becomes `token` events, tool calls `tool_call` events, each
    emitted at once (`StreamContext.emit`). Per token this is the hot path: a token's JSON
    (`events.token_json`) goes through `emit` straight into the log. The idle timeout is a
    watchdog inline here, not a timer per token.
    """
    settings = services.settings
    metrics = services.metrics
    events: AsyncIterator[ProviderEvent] = provider.stream(request)
    if settings.coalesce_ms > 0:
        events = coalesce_text(events, settings.coalesce_ms / 1000.0)
    asked = time.monotonic()
    per_provider = metrics.provider(provider.name)  # labelled once, not per token
    gap_metric = per_provider.token_gap
    watchdog = IdleWatchdog(settings.idle_timeout_s)
    clock = time.monotonic  # the watchdog's clock too: one reading per event serves both
    emit = stream.emit
    try:
        async for event in events:
            now = clock()
            watchdog.last = now  # fed
            if asked:  # provider latency: request sent → its first event of this round
                per_provider.first_event.observe(now - asked)
                asked = 0.0
            text = answer.add(event)
            if text is not None:  # a token
                if timing.ttft is None:
                    timing.ttft = now - timing.started
                    per_provider.ttft.observe(timing.ttft)
                else:
                    gap_metric.observe(now - timing.last_token)
                timing.last_token = now
                emit(token_json(text, answer.chunks - 1))
            elif isinstance(event, ToolCallPart):
                call = event.call
                emit(ToolCallEvent(call_id=call.id, tool=call.name, args=call.arguments))
    except asyncio.CancelledError as exc:
        if not watchdog.fired:
            raise
        raise watchdog.timeout() from exc
    finally:
        watchdog.stop()
        await aclose_quietly(events)


def result_event(outcome: ToolOutcome) -> ToolResultEvent:
    """The `tool_result` event: a failure's message in the stream's language, its outcome
    as the stable `error_code` (the model gets the English text: `ToolOutcome.content`)."""
    call = outcome.call
    if outcome.error is not None:
        return ToolResultEvent(
            call_id=call.id,
            tool=call.name,
            error=localize(outcome.error),
            error_code=outcome.outcome,
        )
    return ToolResultEvent(call_id=call.id, tool=call.name, result=outcome.result)


def tool_metadata(outcome: ToolOutcome) -> dict[str, Any]:
    """The stored `tool` message's metadata: a failure's text as the user was shown it (the
    message's content is the model's English one) and its stable code."""
    call = outcome.call
    if outcome.error is None:
        return {"call_id": call.id, "tool": call.name, "error": False}
    return {
        "call_id": call.id,
        "tool": call.name,
        "error": True,
        "error_code": outcome.outcome,
        "error_text": localize(outcome.error),
    }


async def run_calls(
    services: PipelineServices, setup: ToolSetup, calls: Sequence[ToolCall]
) -> AsyncIterator[ToolProgressEvent | ToolOutcome]:
    """Run calls concurrently; yield progress events and outcomes as they happen."""
    queue: asyncio.Queue[ToolProgressEvent | ToolOutcome] = asyncio.Queue()
    allowed = set(setup.names)

    async def one(call: ToolCall) -> None:
        async def progress(message: str) -> None:
            event = ToolProgressEvent(call_id=call.id, tool=call.name, message=localize(message))
            queue.put_nowait(event)

        context = ToolContext(
            settings=services.settings,
            documents=services.documents,
            owner=setup.owner,
            call_id=call.id,
            tool_name=call.name,
            on_progress=progress,
        )
        item = setup.registry.get(call.name) if call.name in allowed else None
        try:
            outcome = await run_tool(
                item, call, context, timeout_s=setup.timeout_s, available=setup.names
            )
        except Exception as exc:  # a bug in the runner itself: still one result per call
            outcome = failed(call, crashed(call.name, exc))
        queue.put_nowait(outcome)

    tasks = [asyncio.create_task(one(call), name=f"tool:{call.name}") for call in calls]
    try:
        remaining = len(tasks)
        while remaining:
            item = await queue.get()
            if isinstance(item, ToolOutcome):
                remaining -= 1
            yield item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def agent_loop(
    services: PipelineServices,
    stream: StreamContext,
    provider: Provider,
    request: ProviderRequest,
    answer: Answer,
    timing: Timing,
    setup: ToolSetup | None,
    recorder: RoundRecorder,
) -> None:
    """Rounds until the model answers without server tool calls (see module doc)."""
    metrics = services.metrics
    emit = stream.emit
    messages = list(request.messages)
    rounds = 0
    while True:
        text_start, calls_start = len(answer.parts), len(answer.tool_calls)
        await stream_round(services, stream, provider, request, answer, timing)
        calls = answer.tool_calls[calls_start:]
        if setup is None or not calls:
            return
        text = "".join(answer.parts[text_start:])
        outcomes: dict[int, ToolOutcome] = {}  # by id() of the call: ids may repeat
        if rounds >= setup.max_rounds:
            for call in calls:
                outcome = failed(
                    call,
                    tr(
                        "not run: the limit of {rounds} tool rounds for one answer was reached",
                        rounds=setup.max_rounds,
                    ),
                    "limit",
                )
                outcomes[id(call)] = outcome
                metrics.tool_calls.labels(call.name, outcome.outcome).inc()
                emit(result_event(outcome))
            await recorder.round_done(text, calls, [outcomes[id(c)] for c in calls])
            answer.finish_reason = "max_tool_rounds"
            logging.getLogger("tokenrelay.agent").info(
                "answer stopped after %d tool rounds (TOKENRELAY_MAX_TOOL_ROUNDS)",
                setup.max_rounds,
            )
            stopped = StatusEvent(
                message=localize(
                    tr(
                        "Stopped after {rounds} rounds of tool calls: the model kept asking"
                        " for more. The answer so far is kept; ask a narrower question.",
                        rounds=setup.max_rounds,
                    )
                )
            )
            emit(stopped)
            recorder.shown(stopped)
            return
        rounds += 1
        async for item in run_calls(services, setup, calls):
            if isinstance(item, ToolOutcome):
                outcomes[id(item.call)] = item
                metrics.tool_calls.labels(item.call.name, item.outcome).inc()
                emit(result_event(item))
            else:
                emit(item)
                recorder.shown(item)
        ordered = [outcomes[id(c)] for c in calls]
        await recorder.round_done(text, calls, ordered)
        messages.append(ChatMessage("assistant", text, tool_calls=tuple(calls)))
        messages.extend(
            ChatMessage("tool", o.content(), tool_call_id=o.call.id, name=o.call.name)
            for o in ordered
        )
        request = dataclasses.replace(
            request,
            messages=tuple(messages),
            tool_choice="none" if setup.single_shot else request.tool_choice,
        )
