"""The provider protocol: one async iterator method.

A provider turns a `ProviderRequest` into a stream of `ProviderEvent`s: text deltas, complete
tool calls, usage and a finish reason. Adapters map their SDK's errors to `ProviderError` with
one of our codes at the boundary (`raise ProviderError(...) from e`). Cancellation arrives as
`asyncio.CancelledError` at the adapter's current `await`; an adapter must then stop its work
(local generation between tokens, HTTP adapters by closing the upstream response).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

Role = Literal["system", "user", "assistant", "tool"]


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A complete tool call asked for by the model (arguments already parsed)."""

    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: Role
    content: str
    # assistant messages that asked for tools carry them; tool messages answer one call id
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool offered to the model: name, description and a JSON schema of its arguments."""

    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ProviderRequest:
    messages: tuple[ChatMessage, ...]
    model: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: str | None = None  # "auto" | "none" | "required" | a tool name
    response_format: dict[str, Any] | None = None  # {"type": "json_object"} or a JSON schema
    # sampling: each honoured by every adapter, or refused by the API (docs/client.md's table)
    top_p: float | None = None
    stop: tuple[str, ...] | None = None  # the answer ends before the first of these
    seed: int | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    # provider-specific options, e.g. {"scripted": {...}} for the scripted provider
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class TextDelta:
    """A piece of the answer's text. Not frozen, unlike the other events: one is made per
    token, and a frozen dataclass's `__init__` (a call to `object.__setattr__` per field)
    costs several times a plain one (docs/benchmarks.md). Nothing changes it."""

    text: str
    kind: Literal["text"] = "text"


@dataclass(frozen=True, slots=True)
class ToolCallPart:
    call: ToolCall
    kind: Literal["tool_call"] = "tool_call"


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    kind: Literal["usage"] = "usage"


FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "cancelled", "error"]


@dataclass(frozen=True, slots=True)
class Finish:
    reason: FinishReason
    kind: Literal["finish"] = "finish"


ProviderEvent = TextDelta | ToolCallPart | Usage | Finish


# the sampling fields of a request that a provider may not have; each adapter names those it
# honours in its `sampling` attribute, and the API refuses the others (`refused_sampling`)
SAMPLING_FIELDS = ("temperature", "top_p", "stop", "seed", "frequency_penalty", "presence_penalty")
ALL_SAMPLING = frozenset(SAMPLING_FIELDS)


def refused_sampling(provider: object, asked: Mapping[str, object]) -> list[str]:
    """The sampling fields set in `asked` that `provider` does not honour (a provider that
    names none, e.g. a third-party one, honours only `temperature`)."""
    honoured = getattr(provider, "sampling", frozenset({"temperature"}))
    return [f for f in SAMPLING_FIELDS if asked.get(f) is not None and f not in honoured]


@runtime_checkable
class Provider(Protocol):
    """Anything with a name, a default model and one streaming method."""

    name: str
    default_model: str

    def stream(self, request: ProviderRequest) -> AsyncIterator[ProviderEvent]:
        """Yield events for one answer. Must be an async generator (or return one)."""
        ...
