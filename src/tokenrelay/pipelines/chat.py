"""The chat pipeline: session → retrieval → generation ⇄ tools → persist → done, as events.

It emits its events into the stream's context (`streams/context.py`) and returns `done`,
which the runner stores as the terminal event. It knows nothing of HTTP. Whatever way it ends
— done, provider failure, timeout, cancel — the answer so far is stored with a status that
says how it ended, before the terminal event.

Two kinds of turn: a session turn (our API: one new message, history from the session store)
and a stateless turn (`ChatTurn.messages`, the OpenAI-compatible API: the client sends the
whole conversation and nothing is stored).

Server tools (`pipelines/agent.py`): each tool round is stored as it ends — the answer's
placeholder becomes the assistant message with the calls, one `tool` message per result follows,
and a new placeholder takes the rest of the answer — so the history replays in model order.
The `done` event's `message_id` is that last message (the `metadata` event's is the first).
What the user saw besides text and tools — each call's last progress, the last status — is
stored with the answer's last message (metadata `shown`, each with its round), so that a page
that reloads shows it where the stream did (server/ui_messages.py); each tool round's message
holds what was shown until then, which an answer cut short by a crash keeps.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tokenrelay.events import (
    DoneEvent,
    MetadataEvent,
    SourcesEvent,
    StatusEvent,
    ToolProgressEvent,
    UsageInfo,
)
from tokenrelay.i18n import tr
from tokenrelay.pipelines.agent import Timing, ToolSetup, agent_loop, tool_metadata, tool_setup
from tokenrelay.pipelines.answer import Answer
from tokenrelay.pipelines.needs import PipelineServices
from tokenrelay.pipelines.retrieval_step import RagRequest, Retrieved, retrieve
from tokenrelay.providers.base import ChatMessage, ProviderRequest, ToolCall, ToolSpec
from tokenrelay.sessions.base import (
    MessageStatus,
    SessionStore,
    TurnStart,
    new_id,
    plan_new_session,
)
from tokenrelay.sessions.history import build_messages
from tokenrelay.streams import timers
from tokenrelay.streams.context import StreamContext
from tokenrelay.streams.timers import Cancellable
from tokenrelay.tools.runner import ToolOutcome, failed

logger = logging.getLogger("tokenrelay.pipelines.chat")


@dataclass(frozen=True, slots=True)
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
    # server tools (run here, see pipelines/agent.py): off unless the route turns them on
    enable_tools: bool = False
    tool_names: tuple[str, ...] | None = None  # allow-list; None: every registered tool
    # a client-chosen `session_id` that names no session yet is created (owned by `owner`)
    create_session: bool = False
    # a new answer to the session's last user message (`message`), replacing the last answer
    regenerate: bool = False
    # this turn's system prompt instead of the server's `system_prompt` (None: the server's)
    system: str | None = None
    # sampling, passed to the provider as they are (providers/base.py, ProviderRequest)
    top_p: float | None = None
    stop: tuple[str, ...] | None = None
    seed: int | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    # a stateless turn (`messages`) that is also stored: its `message` and the answer go into
    # the session `session_id` (a new one when None), as a session turn's do (the Responses
    # API's `store`)
    store: bool = False
    # the user message this turn's `message` replaces (an edit: the branch after it is kept,
    # superseded)
    edit_of: str | None = None
    # a stale turn's stream whose claim on the session this turn may take (server/turn_guard.py)
    takeover: str | None = None
    # the user message's metadata (`ui_id`: the id a `useChat` client gave it, which its edits
    # name)
    user_metadata: dict[str, Any] | None = None


class _Recorder:
    """Stores tool rounds in the session as they end (see module doc); stateless: nothing.

    While the answer streams, its text so far is written to its placeholder every
    `answer_checkpoint_s` when it has grown (`keep_checkpoints`): a crash of this process
    then keeps it (sessions/recovery.py). One coarse timer per stream, never a write per
    token; an answer shorter than the period never writes one."""

    def __init__(
        self,
        sessions: SessionStore | None,
        start: TurnStart,
        answer: Answer,
        meta: dict[str, Any],
        writing: asyncio.Future[TurnStart] | None = None,
        *,
        stream_id: str | None = None,
        replica_id: str | None = None,
    ) -> None:
        self._sessions = sessions
        self._writing = writing  # a new session's first write, still on its way
        if writing is not None:
            writing.add_done_callback(self._written)
        self._session_id = start.session_id
        self._answer = answer
        self._meta = meta
        self._stream_id = stream_id
        self._replica_id = replica_id
        self.message_id = start.assistant_message_id
        self.text_start = 0
        self.calls_start = 0
        self._pending: asyncio.Task[None] | None = None
        self._every_s = 0.0
        self._timer: Cancellable | None = None
        self._saved = 0  # len(answer.parts) at the last checkpoint
        self._saving: asyncio.Future[None] | None = None
        self._round = 0  # the answer's assistant message being written: its tool rounds so far
        self._shown: dict[tuple[str, str], dict[str, Any]] = {}

    def keep_checkpoints(self, every_s: float) -> None:
        if every_s > 0 and self._sessions is not None:
            self._every_s = every_s
            self._timer = timers.call_later(every_s, self._checkpoint_due)

    def stop_checkpoints(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _checkpoint_due(self) -> None:
        self._timer = timers.call_later(self._every_s, self._checkpoint_due)
        size = len(self._answer.parts)
        busy = self._pending is not None and not self._pending.done()  # a round being stored
        if busy or size == self._saved or (self._saving is not None and not self._saving.done()):
            return
        if self._writing is not None and self._writing.done():
            return  # the turn's first write failed: no placeholder to write to
        self._saved = size
        self._saving = asyncio.ensure_future(self._checkpoint(self.message_id, self.text()))

    async def _checkpoint(self, message_id: str, text: str) -> None:
        assert self._sessions is not None
        try:
            await self.started()
            await self._sessions.checkpoint(message_id, text)
        except Exception:  # the answer goes on; its finish reports a store that is down
            logger.warning("answer checkpoint failed", exc_info=True)

    def shown(self, event: ToolProgressEvent | StatusEvent) -> None:
        """Keep the last of each event that replaces the one before it on screen (a call's
        progress, the status), in the order they were first shown, each with the round it was
        first shown in: the answer's metadata `shown` (server/ui_messages.py shows them where
        the stream did)."""
        data = event.model_dump(mode="json")
        key = (str(data["type"]), str(data.get("call_id", "")))
        first = self._shown.get(key)
        # an update keeps its key's place in the dict: the order first shown
        self._shown[key] = {"round": first["round"] if first else self._round, "event": data}

    def shown_events(self) -> list[dict[str, Any]]:
        return list(self._shown.values())

    async def round_done(
        self, text: str, calls: Sequence[ToolCall], outcomes: Sequence[ToolOutcome]
    ) -> None:
        self._round += 1  # what is shown from now on belongs to the next message
        # shielded: a cancel arriving now must not leave calls without their results
        self._pending = asyncio.ensure_future(self._store_round(text, calls, outcomes))
        await asyncio.shield(self._pending)

    async def _store_round(
        self, text: str, calls: Sequence[ToolCall], outcomes: Sequence[ToolOutcome]
    ) -> None:
        self.text_start, self.calls_start = len(self._answer.parts), len(self._answer.tool_calls)
        if self._sessions is None:
            return
        await self.started()
        sessions = self._sessions
        metadata = {**self._meta, "tool_calls": _calls_json(calls)}
        if self._shown:  # what was shown so far: kept should this process die before the end
            metadata["shown"] = self.shown_events()
        await sessions.finish_turn(
            self.message_id,
            text,
            "complete",
            metadata,
            ends_turn=False,  # the answer goes on after the tool results
        )
        for o in outcomes:
            await sessions.add_message(
                self._session_id,
                "tool",
                o.content(),
                metadata=tool_metadata(o),
            )
        self.message_id = await sessions.add_message(
            self._session_id,
            "assistant",
            "",
            status="streaming",
            stream_id=self._stream_id,
            replica_id=self._replica_id,
        )

    def _written(self, writing: asyncio.Future[TurnStart]) -> None:
        """Once the write has succeeded, let its task go (an idle stream holds no more)."""
        if not writing.cancelled() and writing.exception() is None:
            self._writing = None

    async def started(self) -> None:
        """The turn's first write is done (raises what it raised, e.g. BACKEND_UNAVAILABLE)."""
        if self._writing is not None:
            if not self._writing.done() and self._sessions is not None:
                self._sessions.send_deferred()  # needed now: no more waiting for company
            await self._writing

    async def settle(self) -> None:
        """No round and no checkpoint is being written (call `stop_checkpoints` first)."""
        for write in (self._pending, self._saving):
            if write is not None and not write.done():
                await asyncio.wait([write])

    def open_calls(self) -> list[ToolCall]:
        return self._answer.tool_calls[self.calls_start :]

    def text(self) -> str:
        return "".join(self._answer.parts[self.text_start :])


async def chat_pipeline(
    services: PipelineServices, turn: ChatTurn, stream: StreamContext
) -> DoneEvent:
    """The turn's events, emitted into `stream`; returns its `done` event."""
    settings = services.settings
    emit = stream.emit
    timing = Timing()
    provider = services.providers.get(turn.provider)
    model = turn.model or provider.default_model
    start, writing, question = await _start(services, turn)
    emit(
        MetadataEvent(
            stream_id=turn.stream_id,
            session_id=start.session_id,
            message_id=start.assistant_message_id,
            trace_id=turn.trace_id,
            provider=provider.name,
            model=model,
        )
    )
    retrieved: Retrieved | None = None
    if turn.rag is not None:
        retrieved = await retrieve(
            services, question, start.history, turn.rag, owner=turn.owner, system=turn.system
        )
        if retrieved is not None:
            emit(
                SourcesEvent.model_validate(
                    {"documents": retrieved.sources, "retrieval": retrieved.counts}
                )
            )
    if turn.messages is not None:
        messages = list(turn.messages)
    else:
        system = retrieved.system_prompt if retrieved else turn.system or settings.system_prompt
        messages = build_messages(system, start.history, question, settings.history_token_budget)
    setup = tool_setup(
        services,
        provider,
        enabled=turn.enable_tools,
        allow=turn.tool_names,
        client_tools=bool(turn.client_tools),
        owner=turn.owner,
    )
    tools, tool_choice = turn.client_tools, turn.tool_choice
    if setup is not None:
        # a single-shot model (local) given tools by name calls one first, then answers
        tools, tool_choice = setup.specs, "required" if setup.single_shot else tool_choice
    request = ProviderRequest(
        messages=tuple(messages),
        model=turn.model,
        temperature=turn.temperature if turn.temperature is not None else settings.temperature,
        max_tokens=turn.max_tokens or settings.max_tokens,
        tools=tools,
        tool_choice=tool_choice,
        response_format=turn.response_format,
        top_p=turn.top_p,
        stop=turn.stop,
        seed=turn.seed,
        frequency_penalty=turn.frequency_penalty,
        presence_penalty=turn.presence_penalty,
        extra=turn.extra,
    )
    answer = Answer()
    stored = turn.messages is None or turn.store
    meta = {"provider": provider.name, "model": model, "stream_id": turn.stream_id}
    recorder = _Recorder(
        services.sessions if stored else None,
        start,
        answer,
        meta,
        writing,
        stream_id=turn.stream_id,
        replica_id=services.replica_id,
    )
    del writing  # the recorder lets the finished write go; this frame lasts the whole turn
    recorder.keep_checkpoints(settings.answer_checkpoint_s)
    status: MessageStatus = "failed"
    history_length = len(messages) + 1
    try:
        await agent_loop(services, stream, provider, request, answer, timing, setup, recorder)
        status = "complete"
    except asyncio.CancelledError:
        status = "interrupted"
        stream.generation_stopped()
        raise
    except BaseException as exc:
        code = str(getattr(getattr(exc, "code", None), "value", "INTERNAL_ERROR"))
        services.metrics.provider_errors.labels(provider.name, code).inc()
        status = "interrupted" if code == "TIMEOUT" else "failed"
        raise
    finally:
        recorder.stop_checkpoints()
        if stored:
            history_length = await asyncio.shield(
                _finish(services, start, recorder, answer, status, meta, retrieved, setup)
            )
        per_provider = services.metrics.provider(provider.name)
        per_provider.tokens.inc(answer.completion_tokens)
        if timing.ttft is not None:  # tokens/s from the first token to the end
            since_first = time.monotonic() - timing.started - timing.ttft
            tokens = answer.completion_tokens
            services.metrics.observe_generation(provider.name, tokens, since_first)
        per_provider.stream_duration.observe(time.monotonic() - timing.started)
    return DoneEvent.model_validate(
        {
            "session_id": start.session_id,
            "message_id": recorder.message_id,
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


async def _start(
    services: PipelineServices, turn: ChatTurn
) -> tuple[TurnStart, asyncio.Future[TurnStart] | None, str]:
    """The turn's ids and history, and the user message it answers (a regenerate's is the
    one the store found last). A new session has no history: its ids are made here and
    written while the answer starts (the write is awaited before anything else is stored and
    before `done`), so the first token does not wait for the database."""
    if turn.messages is not None and not turn.store:
        return TurnStart("", "", new_id(), []), None, turn.message
    sessions = services.sessions
    if turn.session_id is None:
        planned = plan_new_session()
        writing = asyncio.ensure_future(
            sessions.start_turn(
                None,
                turn.message,
                owner=turn.owner,
                planned=planned,
                stream_id=turn.stream_id,
                replica_id=services.replica_id,
                user_metadata=turn.user_metadata,
            )
        )
        return planned, writing, turn.message
    if turn.regenerate:
        assert turn.session_id is not None, "a regenerate names its session"
        started, question = await sessions.start_regenerate(
            turn.session_id,
            owner=turn.owner,
            stream_id=turn.stream_id,
            replica_id=services.replica_id,
            takeover=turn.takeover,
        )
        return started, None, question
    if turn.edit_of is not None:
        edited = await sessions.start_edit(
            turn.session_id,
            turn.edit_of,
            turn.message,
            owner=turn.owner,
            stream_id=turn.stream_id,
            replica_id=services.replica_id,
            takeover=turn.takeover,
            user_metadata=turn.user_metadata,
        )
        return edited, None, turn.message
    started = await sessions.start_turn(
        turn.session_id,
        turn.message,
        owner=turn.owner,
        stream_id=turn.stream_id,
        replica_id=services.replica_id,
        create=turn.create_session,
        takeover=turn.takeover,
        user_metadata=turn.user_metadata,
    )
    return started, None, turn.message


async def _finish(
    services: PipelineServices,
    start: TurnStart,
    recorder: _Recorder,
    answer: Answer,
    status: MessageStatus,
    meta: dict[str, Any],
    retrieved: Retrieved | None,
    setup: ToolSetup | None,
) -> int:
    """Store the rest of the answer; server tool calls left without results (the turn was
    interrupted) get an error result, so the history never holds a call without its answer.

    A store whose writes land in order takes the answer's write at once, behind the turn's
    first write if that has not landed yet (a short answer): the two share one commit."""
    sessions = services.sessions
    await recorder.settle()
    if not sessions.writes_in_order:
        await recorder.started()
    open_calls = recorder.open_calls()
    metadata = _answer_metadata(answer, meta, open_calls, retrieved, recorder.shown_events())
    finishing = sessions.finish_turn(recorder.message_id, recorder.text(), status, metadata)
    if sessions.writes_in_order:
        try:
            await recorder.started()  # its failure is the turn's: the answer's write, in the
        except BaseException:  # same group, found no row to update
            asyncio.ensure_future(finishing).add_done_callback(_retrieved)
            raise
    count = await finishing
    if setup is not None and open_calls and answer.finish_reason != "max_tool_rounds":
        for call in open_calls:
            outcome = failed(
                call,
                tr("not run: the answer ended ({status}) before the tool finished", status=status),
                "not_run",
            )
            await sessions.add_message(
                start.session_id, "tool", outcome.content(), metadata=tool_metadata(outcome)
            )
            count += 1
    return count


def _retrieved(future: asyncio.Future[Any]) -> None:
    """A write whose outcome nobody reads any more: its exception is not 'never retrieved'."""
    if not future.cancelled():
        future.exception()


def _calls_json(calls: Sequence[ToolCall]) -> list[dict[str, Any]]:
    return [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in calls]


def _answer_metadata(
    answer: Answer,
    meta: dict[str, Any],
    open_calls: Sequence[ToolCall],
    retrieved: Retrieved | None,
    shown: list[dict[str, Any]],
) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "finish_reason": answer.finish_reason,
        "usage": {
            "prompt_tokens": answer.prompt_tokens,
            "completion_tokens": answer.completion_tokens,
        },
        **meta,
    }
    if open_calls:
        metadata["tool_calls"] = _calls_json(open_calls)
    if retrieved is not None:
        metadata["sources"] = retrieved.sources
    if shown:
        metadata["shown"] = shown
    return metadata
