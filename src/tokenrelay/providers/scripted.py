"""A deterministic provider for tests, demos and benchmarks.

Per request, `options.scripted` (validated by `ScriptedOptions`) chooses the reply text, how many
pieces it is streamed in, the pause before each piece, and a failure, a stall or one long
silence after k pieces.
It keeps counters (`stats`) so that tests can see, over HTTP, that cancellation reached it.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import overload

from tokenrelay.config import Settings
from tokenrelay.errors import ProviderError
from tokenrelay.i18n import tr
from tokenrelay.providers.base import (
    ALL_SAMPLING,
    Finish,
    ProviderEvent,
    ProviderRequest,
    TextDelta,
    ToolCall,
    ToolCallPart,
    Usage,
)
from tokenrelay.providers.options import ScriptedOptions

_PIECE = re.compile(r"\s*\S+\s*")


def default_reply(question: str) -> str:
    return f"This is tokenrelay's scripted answer to: {question}"


class EvenPieces(Sequence[str]):
    """`text` cut into `count` pieces whose lengths differ by at most one, cut as they are
    read: an idle stream asked for 100,000 tokens holds one string, not 100,000."""

    __slots__ = ("_count", "_extra", "_size", "_text")

    def __init__(self, text: str, count: int) -> None:
        self._text = text
        self._count = count
        self._size, self._extra = divmod(len(text), count)

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[str]:
        text, size, extra = self._text, self._size, self._extra
        start = 0
        for i in range(self._count):
            end = start + size + (1 if i < extra else 0)
            yield text[start:end]
            start = end

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[str]: ...

    def __getitem__(self, index: int | slice) -> str | Sequence[str]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._count))]
        if index < 0:
            index += self._count
        if not 0 <= index < self._count:
            raise IndexError(index)
        start = index * self._size + min(index, self._extra)
        return self._text[start : start + self._size + (1 if index < self._extra else 0)]


def split_pieces(text: str, tokens: int | None) -> Sequence[str]:
    """Split `text` into stream pieces: by words, or into exactly `tokens` pieces.

    With more pieces than characters, the text is repeated until every piece has one.
    Joining the pieces always gives back the (possibly repeated) text exactly.
    """
    if tokens is None:
        words: list[str] = _PIECE.findall(text)
        return words or ([text] if text else [])
    if not text:
        text = "."
    if len(text) < tokens:
        text = " ".join([text] * -(-(tokens + 1) // (len(text) + 1)))
    return EvenPieces(text, tokens)


def tool_rounds_done(request: ProviderRequest) -> int:
    """Tool rounds since the last user message: assistant messages with tool calls (at least
    one when a tool result is there, for clients that send results without the calls)."""
    done, answered = 0, False
    for message in reversed(request.messages):
        if message.role == "user":
            break
        if message.role == "assistant" and message.tool_calls:
            done += 1
        answered = answered or message.role == "tool"
    return max(done, 1) if answered else done


def reply_text(opts: ScriptedOptions, request: ProviderRequest) -> str:
    if opts.replies:
        k = sum(1 for m in request.messages if m.role == "assistant")
        return opts.replies[min(k, len(opts.replies) - 1)]
    if opts.reply is not None:
        return opts.reply
    question = next((m.content for m in reversed(request.messages) if m.role == "user"), "")
    return default_reply(question)


def _word_count(request: ProviderRequest) -> int:
    return sum(len(m.content.split()) for m in request.messages)


@dataclass
class ScriptedStats:
    """What the provider saw; read by tests and benchmarks."""

    started: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    cancel_times: list[float] = field(default_factory=list)


def cut_at_stop(text: str, stop: Sequence[str] | None) -> str:
    """The text before the first of the stop strings (all of it when none occurs)."""
    cut = min((i for i in (text.find(s) for s in stop or ()) if i >= 0), default=len(text))
    return text[:cut]


class ScriptedProvider:
    name = "scripted"
    default_model = "scripted-1"
    # deterministic whatever the sampling asks; `stop` cuts the reply; all are recorded in
    # `last_request` for tests
    sampling = ALL_SAMPLING

    def __init__(self) -> None:
        self.stats = ScriptedStats()
        self.last_request: ProviderRequest | None = None  # what the model was sent, for tests

    @classmethod
    def from_settings(cls, settings: Settings) -> ScriptedProvider:
        return cls()

    async def stream(self, request: ProviderRequest) -> AsyncIterator[ProviderEvent]:
        opts = ScriptedOptions.model_validate(request.extra.get("scripted") or {})
        self.stats.started += 1
        self.last_request = request
        try:
            rounds = tool_rounds_done(request)
            if opts.tool_calls and rounds < opts.tool_rounds:
                for i, call in enumerate(opts.tool_calls):
                    call_id = call.id or (f"call_{i}" if rounds == 0 else f"call_{rounds}_{i}")
                    yield ToolCallPart(ToolCall(call_id, call.name, dict(call.arguments)))
                yield Usage(
                    prompt_tokens=_word_count(request), completion_tokens=len(opts.tool_calls)
                )
                yield Finish("tool_calls")
                self.stats.completed += 1
                return
            planned = split_pieces(
                cut_at_stop(reply_text(opts, request), request.stop), opts.tokens
            )
            sending = len(planned)
            if request.max_tokens is not None:
                sending = min(sending, request.max_tokens)
            delay = opts.delay_ms / 1000.0
            checked = (
                opts.error_after is not None
                or opts.stall_after is not None
                or opts.pause_after is not None
            )
            fault = _Fault(opts) if checked else None
            del opts  # an idle stream keeps what it needs, not the request's options model
            for sent, piece in enumerate(islice(planned, sending)):
                if fault is not None:
                    await fault.before(sent)
                if delay > 0:  # the hot path of the relay benchmark: nothing else per piece
                    await asyncio.sleep(delay)
                yield TextDelta(piece)
            if fault is not None:
                await fault.before(sending)
            yield Usage(prompt_tokens=_word_count(request), completion_tokens=sending)
            yield Finish("length" if sending < len(planned) else "stop")
            self.stats.completed += 1
        except asyncio.CancelledError:
            self.stats.cancelled += 1
            self.stats.cancel_times.append(time.monotonic())
            raise
        except GeneratorExit:
            self.stats.cancelled += 1
            self.stats.cancel_times.append(time.monotonic())
            raise
        except ProviderError:
            self.stats.failed += 1
            raise


class _Fault:
    """The failure, stall or silence asked for (`error_after`, `stall_after`, `pause_after`),
    before piece `sent`."""

    __slots__ = ("code", "error_after", "pause_after", "pause_s", "stall_after")

    def __init__(self, opts: ScriptedOptions) -> None:
        self.error_after = opts.error_after
        self.stall_after = opts.stall_after
        self.pause_after = opts.pause_after
        self.pause_s = opts.pause_ms / 1000.0
        self.code = opts.error_code

    async def before(self, sent: int) -> None:
        if self.pause_after is not None and sent == self.pause_after:
            await asyncio.sleep(self.pause_s)  # once: then the pieces go on
        if self.error_after is not None and sent >= self.error_after:
            raise ProviderError(
                tr("scripted failure after {count} pieces", count=sent),
                suggestion=tr("this failure was asked for by options.scripted.error_after"),
                code=self.code,
            )
        if self.stall_after is not None and sent >= self.stall_after:
            await asyncio.get_running_loop().create_future()  # stall until cancelled
