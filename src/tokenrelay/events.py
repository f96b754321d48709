"""Wire events (DESIGN.md §3): what a stream says, independent of any wire format.

Each event is a pydantic model whose `type` is its discriminator. The stream log stores events
as `Envelope`s: the sequence number, the type and the JSON text, encoded once. How they look on
the wire (native SSE frames, OpenAI's chunks, ...) is an encoder's business
(`delivery/encoders.py`). JSON keeps non-ASCII text as is (Korean stays Korean).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, NamedTuple

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    TypeAdapter,
    model_serializer,
)

from tokenrelay.errors import TokenRelayError
from tokenrelay.i18n import localize


class _Event(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class MetadataEvent(_Event):
    type: Literal["metadata"] = "metadata"
    stream_id: str
    session_id: str
    message_id: str
    trace_id: str
    provider: str
    model: str


def _without_nones(data: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if not (k in keys and v is None)}


_RANK_FIELDS = ("lexical_rank", "lexical_score", "vector_rank", "vector_score")


class SourceDocument(BaseModel):
    id: str
    title: str
    snippet: str
    score: float
    metadata: dict[str, Any] = Field(default_factory=dict)
    # semantic/hybrid retrieval (docs/retrieval.md): each retriever's rank (1 = best) and score;
    # left out of the JSON when the search was lexical only, null when that retriever missed
    lexical_rank: int | None = None
    lexical_score: float | None = None
    vector_rank: int | None = None
    vector_score: float | None = None

    @model_serializer(mode="wrap")
    def _drop_unranked(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if self.lexical_rank is None and self.vector_rank is None:
            return _without_nones(data, _RANK_FIELDS)
        return data


class SourcesEvent(_Event):
    type: Literal["sources"] = "sources"
    documents: list[SourceDocument]
    # how they were found: mode, found per retriever, after fusion, reranked, returned
    retrieval: dict[str, Any] | None = None

    @model_serializer(mode="wrap")
    def _drop_empty(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        return _without_nones(data, ("retrieval",))


class StatusEvent(_Event):
    type: Literal["status"] = "status"
    message: str


class ProgressEvent(_Event):
    type: Literal["progress"] = "progress"
    step: str
    message: str
    progress: float = Field(ge=0, le=100)


class TokenEvent(_Event):
    type: Literal["token"] = "token"
    content: str
    index: int


class ToolCallEvent(_Event):
    type: Literal["tool_call"] = "tool_call"
    call_id: str
    tool: str
    args: dict[str, Any]


class ToolProgressEvent(_Event):
    type: Literal["tool_progress"] = "tool_progress"
    call_id: str
    tool: str
    message: str


class ToolResultEvent(_Event):
    type: Literal["tool_result"] = "tool_result"
    call_id: str
    tool: str
    result: Any = None
    error: str | None = None  # in the user's language
    # a failure's stable code (tools/runner.py `Outcome`): error, timeout, invalid_arguments,
    # unknown_tool, bad_result, limit; left out of the JSON when the call succeeded
    error_code: str | None = None

    @model_serializer(mode="wrap")
    def _drop_no_code(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        return _without_nones(data, ("error_code",))


class CompleteEvent(_Event):
    type: Literal["complete"] = "complete"
    result: dict[str, Any]


class UsageInfo(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0


class DoneEvent(_Event):
    type: Literal["done"] = "done"
    session_id: str
    message_id: str
    finish_reason: str
    usage: UsageInfo
    total_chunks: int
    ttft_s: float | None
    processing_time_s: float
    history_length: int
    sources: list[SourceDocument] | None = None  # the documents the answer was grounded in


class ErrorEvent(_Event):
    type: Literal["error"] = "error"
    code: str
    message: str
    suggestion: str = ""
    retryable: bool = False
    retry_after_s: float | None = None
    details: Any = None  # for developers and operators (what to check), not for end users

    @classmethod
    def from_error(cls, err: TokenRelayError) -> ErrorEvent:
        return cls(
            code=err.code.value,
            message=localize(err.message),
            suggestion=localize(err.suggestion),
            retryable=err.retryable,
            retry_after_s=err.retry_after_s,
            details=err.details,
        )


Event = Annotated[
    MetadataEvent
    | SourcesEvent
    | StatusEvent
    | ProgressEvent
    | TokenEvent
    | ToolCallEvent
    | ToolProgressEvent
    | ToolResultEvent
    | CompleteEvent
    | DoneEvent
    | ErrorEvent,
    Field(discriminator="type"),
]

TERMINAL_TYPES = frozenset({"done", "error"})

event_adapter: TypeAdapter[Event] = TypeAdapter(Event)


def parse_event(data: str | bytes) -> Event:
    """Parse the JSON of one `data:` payload into its typed event."""
    return event_adapter.validate_json(data)


class Envelope(NamedTuple):
    """One numbered event in a stream log: JSON encoded once, sent many times.

    A named tuple, not a frozen dataclass: one is made per token, and a frozen dataclass's
    `__init__` sets each field through `object.__setattr__`."""

    seq: int
    type: str
    data: str

    @property
    def terminal(self) -> bool:
        return self.type in TERMINAL_TYPES


class Encoded(NamedTuple):
    """An event whose JSON is already made: the hot path, one per token.

    Same JSON as the model it stands for (`token_event` ≡ `TokenEvent(...).model_dump_json()`,
    checked by a test); building a pydantic model and dumping it for every token was a tenth
    of the relay's CPU per event."""

    type: str
    data: str


# A named tuple's own `__new__` is a Python function; the hot path calls tuple's directly
# (half the cost, three times per token).
_tuple_new = tuple.__new__


def token_json(content: str, index: int) -> str:
    """The token event's JSON, as orjson writes the model's dict (no spaces, same order):
    what a pipeline emits for a token (`StreamContext.emit`, the log's lane), one per token."""
    return f'{{"type":"token","content":{orjson.dumps(content).decode()},"index":{index}}}'


def token_event(content: str, index: int) -> Encoded:
    """The token event, encoded (`token_json`), for callers that yield or emit events."""
    return _tuple_new(Encoded, ("token", token_json(content, index)))


def envelope(seq: int, event: _Event | Encoded) -> Envelope:
    if type(event) is Encoded:
        return _tuple_new(Envelope, (seq, event.type, event.data))
    return Envelope(seq, event.type, event.model_dump_json())  # type: ignore[union-attr]


READER_SEQ = 0
"""The seq of an event that a reader makes itself and that is not in the log (a stream cut
short under it: `STREAM_INCOMPLETE`, or its backend gone). Always terminal; the encoders give
it no `id:` line, so a client's Last-Event-ID stays at the last event of the log and a retry
resumes exactly there."""


def reader_error(err: TokenRelayError) -> Envelope:
    """The terminal `error` a reader ends a stream with when the log cannot (`READER_SEQ`)."""
    return Envelope(READER_SEQ, "error", ErrorEvent.from_error(err).model_dump_json())


def parse_event_id(value: str) -> tuple[str, int]:
    """Split `<stream_id>:<seq>`; raises ValueError when it is not of that form."""
    stream_id, sep, seq = value.strip().rpartition(":")
    if not sep or not stream_id or not seq.isdigit():
        raise ValueError(f"not a tokenrelay event id: {value!r}")
    return stream_id, int(seq)
