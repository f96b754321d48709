"""The `local` provider: the bundled SmolLM2-135M-Instruct (or any GGUF) run by llama.cpp.

Behaviour:

* The model loads once, lazily, off the event loop (`load()` is thread-safe and idempotent).
* The prompt is the model's own chat template (GGUF `tokenizer.chat_template`) over the
  request messages; it is tokenised off the loop and counted for real (`Usage.prompt_tokens`).
  A prompt that leaves no room for `max_tokens` in one sequence's context raises
  CONTEXT_TOO_LONG.
* Same numerics as llama-cpp-python's `Llama` defaults (flash attention off), so greedy output
  matches `Llama.create_completion(temperature=0)` token for token.
* Generation runs on the engine thread (`llama_engine.LlamaEngine`): continuous batching of up
  to `n_seq_max` sequences, FIFO admission beyond that, one token per sequence per step.
* Cancellation: when the consuming task is cancelled or the generator is closed, the job's
  cancel flag is set and the engine drops the sequence before its next token. Observe it with
  `provider.cancelled_count` / `provider.stats` (`EngineStats`).
* `Finish` is "stop" (end-of-turn token), "length" (max_tokens) or "tool_calls"; `Usage` carries
  the real prompt and generated token counts.
* Structured output and tool calls are grammar-constrained, see `llama_structured` and
  `llama_tools` (the `<tool_call>` format; a reply that may call a tool is a call or a plain
  answer, and ends: after the call's end only the end-of-turn token is left).
* Options in `request.extra["local"]`: `{"seed": int}` to override the configured seed.
"""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from collections.abc import AsyncIterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from tokenrelay.config import Settings
from tokenrelay.errors import ErrorCode, ProviderError
from tokenrelay.i18n import tr
from tokenrelay.providers.base import (
    ALL_SAMPLING,
    ChatMessage,
    Finish,
    ProviderEvent,
    ProviderRequest,
    TextDelta,
    ToolCallPart,
    Usage,
)
from tokenrelay.providers.chat_template import CHATML_TEMPLATE, render_chat
from tokenrelay.providers.llama_engine import (
    EngineDone,
    EngineEvent,
    EngineFailed,
    EngineStats,
    EngineText,
    Job,
    LlamaEngine,
)
from tokenrelay.providers.llama_runtime import LlamaRuntime, RuntimeConfig, convert_weights
from tokenrelay.providers.llama_structured import (
    Constraint,
    format_constraint,
    with_instructions,
)
from tokenrelay.providers.llama_tools import ToolReply, tool_constraint
from tokenrelay.providers.model_files import (
    WeightsKind,
    effective_weights,
    prepare_weights,
    resolve_model_path,
)
from tokenrelay.providers.weights_auto import auto_weights, machine_context, time_decode_steps

DEFAULT_TEMPERATURE = 0.2  # SmolLM2's recommended sampling temperature


def default_threads() -> tuple[int, int]:
    """(generation, batch) threads: half the cores for one-token steps, all of them for
    larger ones (llama-cpp-python's own defaults).

    llama.cpp uses the generation count for one-token steps (a single stream decoding) and the
    batch count for every larger step (prefill, and decode steps of several sequences). A
    one-token step gains little from more threads; a batched step is where the work is when
    several users share the model: with one batch thread, several users together got little
    more than one user alone; with two they got far more (docs/benchmarks.md, "Local
    model").

    The cost: llama.cpp's threads spin at barriers, so when another busy process takes a core
    a descheduled thread stalls the rest; on an earlier VM, with one such neighbour, 2 batch
    threads made 8-sequence steps almost 4x slower. On a machine shared with other work, set
    TOKENRELAY_LOCAL_N_THREADS_BATCH (or TOKENRELAY_LOCAL_N_THREADS, which sets both) to half
    the cores (docs/providers.md).
    """
    cores = os.cpu_count() or 2
    return max(1, cores // 2), cores


def with_default_system(
    messages: tuple[ChatMessage, ...], system_prompt: str
) -> tuple[ChatMessage, ...]:
    """`messages`, with `system_prompt` first when they have no system message of their own."""
    if not system_prompt or any(m.role == "system" for m in messages):
        return messages
    return (ChatMessage("system", system_prompt), *messages)


class LocalProvider:
    name = "local"
    default_model = "SmolLM2-135M-Instruct"
    sampling = ALL_SAMPLING  # stop strings: cut in the engine (providers/_stops.py)

    def __init__(
        self,
        *,
        model_path: Path | None = None,
        n_ctx: int = 2048,
        n_seq_max: int = 4,
        n_batch: int = 512,
        n_threads: int | None = None,
        n_threads_batch: int | None = None,
        flash_attn: bool | None = False,
        seed: int = 0,
        max_tokens: int = 256,
        temperature: float | None = None,
        weights: WeightsKind = "auto",
        cache_dir: Path | None = None,
        system_prompt: str = "",
    ) -> None:
        gen_threads, batch_threads = default_threads()
        self._config_args: dict[str, Any] = {
            "n_ctx_per_seq": n_ctx,
            "n_seq_max": n_seq_max,
            "n_batch": n_batch,
            "n_threads": n_threads or gen_threads,
            "n_threads_batch": n_threads_batch or n_threads or batch_threads,
            "flash_attn": flash_attn,
        }
        self._model_path = model_path
        self._weights: WeightsKind = weights
        self._cache_dir = cache_dir if cache_dir is not None else Settings().data_dir / "models"
        self.model_file: Path | None = None  # the GGUF actually loaded, once loaded
        self.weights: str | None = None  # its kind ("original", "f16", ...), once loaded
        self.seed = seed
        self.max_tokens = max_tokens
        self.temperature = temperature
        # given to a conversation that has no system message (an OpenAI client's, say): the
        # bundled SmolLM2 answers off topic, and its tool calls go astray, without one
        self.system_prompt = system_prompt
        self._engine: LlamaEngine | None = None
        self._template = CHATML_TEMPLATE
        self._load_lock = threading.Lock()
        self._mailbox_lock = threading.Lock()
        self._mailboxes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Mailbox] = (
            weakref.WeakKeyDictionary()
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> LocalProvider:
        return cls(
            model_path=settings.local_model_path,
            n_ctx=settings.local_n_ctx,
            n_seq_max=settings.local_n_seq_max,
            n_batch=settings.local_n_batch,
            n_threads=settings.local_n_threads,
            n_threads_batch=settings.local_n_threads_batch,
            seed=settings.local_seed,
            max_tokens=settings.max_tokens,
            temperature=settings.temperature,
            weights=settings.local_weights,
            cache_dir=settings.data_dir / "models",
            system_prompt=settings.system_prompt,
        )

    # -- lifecycle

    def load(self) -> LlamaEngine:
        """Load the model and start the engine once. Blocking: call it off the event loop."""
        with self._load_lock:
            if self._engine is None:
                source = resolve_model_path(self._model_path)
                kind = effective_weights(self._weights, bundled=self._model_path is None)
                if kind == "auto":
                    kind, path = self._auto_weights(source)
                else:
                    path = prepare_weights(source, kind, self._cache_dir, convert_weights)
                runtime = LlamaRuntime.load(RuntimeConfig(model_path=path, **self._config_args))
                self._template = runtime.chat_template() or CHATML_TEMPLATE
                self.model_file = path
                self.weights = kind
                self._engine = LlamaEngine(runtime)
            return self._engine

    def _auto_weights(self, source: Path) -> tuple[str, Path]:
        """The bundled file or its F16 conversion, whichever this machine runs faster with
        this provider's threads and sequences (timed once, then cached)."""
        args = self._config_args
        n, threads, batch = args["n_seq_max"], args["n_threads"], args["n_threads_batch"]
        measure = partial(time_decode_steps, sizes=(1, n), threads=threads, threads_batch=batch)
        context = [*machine_context(), f"threads {threads}/{batch}", f"sequences {n}"]
        return auto_weights(source, self._cache_dir, convert_weights, measure, context=context)

    def close(self) -> None:
        """Stop the engine thread and free the model. Blocking; `aclose` from async code."""
        with self._load_lock:
            engine, self._engine = self._engine, None
        if engine is not None:
            engine.close()

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)

    @property
    def stats(self) -> EngineStats:
        """Engine counters (submitted, cancelled, completed, recent sequences...)."""
        return self.load().stats

    @property
    def cancelled_count(self) -> int:
        return self.stats.cancelled

    # -- prompt

    def format_prompt(self, messages: Sequence[ChatMessage]) -> str:
        return render_chat(self._template, messages)

    def tokenize_prompt(self, messages: Sequence[ChatMessage]) -> list[int]:
        """The prompt's token ids (what `Usage.prompt_tokens` counts). Blocking."""
        engine = self.load()
        return engine.runtime.tokenize(self.format_prompt(messages))

    def count_tokens(self, text: str) -> int:
        """Tokens of plain text, e.g. for history budgets. Blocking."""
        return len(self.load().runtime.tokenize(text))

    # -- generation

    async def stream(self, request: ProviderRequest) -> AsyncIterator[ProviderEvent]:
        constraint = _constraint(request)
        messages = request.messages
        messages = with_default_system(messages, self.system_prompt)
        if constraint is not None:
            messages = with_instructions(messages, constraint.instructions)
        engine = self._engine
        if engine is None:
            engine = await asyncio.to_thread(self.load)
        prompt = await asyncio.to_thread(self.tokenize_prompt, messages)
        max_tokens = request.max_tokens or self.max_tokens
        _check_fits(len(prompt), max_tokens, engine.n_ctx_per_seq)

        queue: asyncio.Queue[EngineEvent] = asyncio.Queue()
        mailbox = self._mailbox(asyncio.get_running_loop())

        def sink(event: EngineEvent) -> None:
            mailbox.post(queue, event)

        job = Job(
            prompt=prompt,
            max_tokens=max_tokens,
            temperature=self._temperature(request),
            seed=_seed(request, self.seed),
            sink=sink,
            grammar=constraint.grammar if constraint is not None else None,
            top_p=request.top_p,
            frequency_penalty=request.frequency_penalty or 0.0,
            presence_penalty=request.presence_penalty or 0.0,
            stop=request.stop or (),
        )
        engine.submit(job)
        finished = False
        try:
            async for event in _events(queue, constraint):
                if isinstance(event, Finish):
                    finished = True
                yield event
        finally:
            if not finished:
                engine.cancel(job)

    def _mailbox(self, loop: asyncio.AbstractEventLoop) -> _Mailbox:
        with self._mailbox_lock:
            mailbox = self._mailboxes.get(loop)
            if mailbox is None:
                mailbox = self._mailboxes[loop] = _Mailbox(loop)
            return mailbox

    def _temperature(self, request: ProviderRequest) -> float:
        for value in (request.temperature, self.temperature):
            if value is not None:
                return value
        return DEFAULT_TEMPERATURE


class _Mailbox:
    """Carries engine events to one event loop with one wake-up per burst, not per token.

    The engine thread posts every sequence's text as it samples it; the first post of a burst
    schedules one `_deliver` on the loop (`call_soon_threadsafe`, a pipe write that wakes the
    loop) and later posts before it runs just join the list. So the loop wakes about once per
    decode step whatever the number of sequences, and less often when it is busy.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._pending: list[tuple[asyncio.Queue[EngineEvent], EngineEvent]] = []

    def post(self, queue: asyncio.Queue[EngineEvent], event: EngineEvent) -> None:
        """Called on the engine thread. RuntimeError when the loop is closed (consumer gone)."""
        with self._lock:
            self._pending.append((queue, event))
            if len(self._pending) > 1:
                if self._loop.is_closed():
                    self._pending.clear()
                    raise RuntimeError("event loop is closed")
                return
        try:
            self._loop.call_soon_threadsafe(self._deliver)
        except RuntimeError:
            with self._lock:
                self._pending.clear()
            raise

    def _deliver(self) -> None:
        with self._lock:
            batch, self._pending = self._pending, []
        for queue, event in batch:
            queue.put_nowait(event)


def _constraint(request: ProviderRequest) -> Constraint | None:
    """Tools, when a call may be made now; else the `response_format`'s JSON, if any."""
    constraint = tool_constraint(request.messages, request.tools, request.tool_choice)
    return constraint or format_constraint(request.response_format)


async def _events(
    queue: asyncio.Queue[EngineEvent], constraint: Constraint | None
) -> AsyncIterator[ProviderEvent]:
    """Engine events -> provider events. In tool mode an answer streams from its first token
    while a call is buffered and parsed at the end; a call cut by max_tokens is no call, and
    the finish is "length" (see `llama_tools`)."""
    reply = ToolReply() if constraint is not None and constraint.tool_mode else None
    while True:
        event = await queue.get()
        if isinstance(event, EngineText):
            if reply is None:
                yield TextDelta(event.text)
                continue
            text = reply.feed(event.text)
            if text:
                yield TextDelta(text)
        elif isinstance(event, EngineDone):
            reason: Any = event.reason
            cut = reason == "length" and not (reply is not None and reply.complete)
            if reply is not None and reply.kind == "call" and not cut:
                yield ToolCallPart(reply.call())
                reason = "tool_calls"
            yield Usage(event.prompt_tokens, event.completion_tokens)
            yield Finish(reason)
            return
        else:
            assert isinstance(event, EngineFailed)
            raise event.error


def _check_fits(prompt_tokens: int, max_tokens: int, n_ctx: int) -> None:
    if prompt_tokens + max_tokens > n_ctx:
        raise ProviderError(
            tr(
                "the conversation is too long for the model: {needed} tokens, it holds {limit}",
                needed=prompt_tokens + max_tokens,
                limit=n_ctx,
            ),
            suggestion=tr("shorten the message, or start a new conversation"),
            details={"operator": "raise TOKENRELAY_LOCAL_N_CTX for a larger context"},
            code=ErrorCode.CONTEXT_TOO_LONG,
            retryable=False,
        )


def _seed(request: ProviderRequest, default: int) -> int:
    if request.seed is not None:
        return request.seed & 0xFFFFFFFF  # llama.cpp's seeds are 32-bit
    options = request.extra.get("local")
    if isinstance(options, dict) and isinstance(options.get("seed"), int):
        return int(options["seed"])
    return default
