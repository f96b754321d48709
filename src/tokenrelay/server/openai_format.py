"""The OpenAI Chat Completions wire format, as pure functions and plain state.

Requests: `ChatCompletionRequest` and its mapping to our `ChatMessage`/`ToolSpec`. Sampling
parameters go to the provider (or are refused by the route when it lacks one); fields that
would change the answer and that we cannot honour are refused by name (`check_supported`);
others that change nothing (`user`, `metadata`, …) are accepted and ignored.
Responses: `ChunkTranslator` turns our wire events into `chat.completion.chunk` objects exactly
as the official `openai` SDK parses them; `CompletionAccumulator` folds the same events into one
`chat.completion`. Errors use OpenAI's shape `{"error": {message, type, param, code}}` with our
stable code as `code`. No I/O here: the route in `routes/openai_compat.py` does that.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from tokenrelay.delivery.encoders import Encoder
from tokenrelay.errors import ErrorCode, ValidationError, http_status_for
from tokenrelay.events import Envelope
from tokenrelay.providers.base import ChatMessage, Role, ToolCall, ToolSpec
from tokenrelay.providers.options import ScriptedOptions

DONE_FRAME = b"data: [DONE]\n\n"
_FINISH_REASONS = frozenset({"stop", "length", "tool_calls", "content_filter"})


# -- requests ---------------------------------------------------------------------------------


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class FunctionCallIn(_Open):
    name: str
    arguments: str = "{}"


class ToolCallIn(_Open):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCallIn


class MessageIn(_Open):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[ToolCallIn] | None = None
    tool_call_id: str | None = None


class FunctionDef(_Open):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str = ""
    parameters: dict[str, Any] | None = None


class ToolIn(_Open):
    type: Literal["function"] = "function"
    function: FunctionDef


class StreamOptions(_Open):
    include_usage: bool = False


class TokenRelayExtras(BaseModel):
    """`"tokenrelay": {...}` in the body (the SDK's `extra_body`): our own per-request options."""

    model_config = ConfigDict(extra="forbid")

    scripted: ScriptedOptions | None = None


class ChatCompletionRequest(_Open):
    model: str = Field(min_length=1, max_length=200)
    messages: list[MessageIn] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, ge=0.0, le=1.0)
    stop: str | list[str] | None = None
    seed: int | None = None
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    max_tokens: int | None = Field(default=None, ge=1, le=32768)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=32768)
    n: int | None = Field(default=None, ge=1, le=1, description="only one choice is supported")
    tools: list[ToolIn] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    tokenrelay: TokenRelayExtras | None = None

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    @property
    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    @property
    def stop_strings(self) -> tuple[str, ...] | None:
        return to_stop(self.stop)


# Chat Completions parameters that tokenrelay refuses (400 naming them) when they ask for
# something: (field, the value that asks nothing)
_REFUSED: tuple[tuple[str, object], ...] = (
    ("logprobs", False),
    ("top_logprobs", None),
    ("logit_bias", None),
    ("audio", None),
    ("modalities", None),
    ("prediction", None),
    ("web_search_options", None),
    ("functions", None),
    ("function_call", None),
)


def check_supported(body: ChatCompletionRequest) -> None:
    """Refuse, by name, what a request asks for and tokenrelay cannot do."""
    extra = body.model_extra or {}
    for name, neutral in _REFUSED:
        value = extra.get(name)
        if value is not None and value != neutral:
            raise _invalid(
                f"{name} is not supported by tokenrelay",
                name,
                f"leave {name} out (docs/client.md lists the parameters each provider honours)",
            )
    if body.stream_options is not None and not body.stream:
        raise _invalid(
            "stream_options is only allowed when stream is true",
            "stream_options",
            "set stream: true, or leave stream_options out",
        )


def to_stop(stop: str | list[str] | None) -> tuple[str, ...] | None:
    """`stop`: a string or up to 4 strings, none empty (OpenAI's limit)."""
    if stop is None:
        return None
    stops = (stop,) if isinstance(stop, str) else tuple(stop)
    if len(stops) > 4 or any(not s for s in stops):
        raise _invalid(
            "stop takes up to 4 strings, none of them empty",
            "stop",
            "send at most 4 non-empty stop strings",
        )
    return stops or None


def _invalid(message: str, param: str, suggestion: str) -> ValidationError:
    return ValidationError(message, suggestion=suggestion, details={"param": param})


def _text_of(content: str | list[dict[str, Any]] | None, param: str) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    texts: list[str] = []
    for part in content:
        if part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise _invalid(
                f"content part of type {part.get('type')!r} is not supported",
                param,
                "send text content only (a string, or parts of type 'text')",
            )
        texts.append(part["text"])
    return "".join(texts)


def _tool_call_of(call: ToolCallIn, param: str) -> ToolCall:
    try:
        arguments = json.loads(call.function.arguments or "{}")
    except ValueError:
        arguments = None
    if not isinstance(arguments, dict):
        raise _invalid(
            f"tool call {call.id!r} has arguments that are not a JSON object",
            param,
            "send function.arguments as the JSON text of an object, as the model produced it",
        )
    return ToolCall(call.id, call.function.name, arguments)


def to_chat_messages(messages: list[MessageIn]) -> tuple[ChatMessage, ...]:
    """OpenAI messages → ours (`developer` counts as `system`)."""
    out: list[ChatMessage] = []
    for i, msg in enumerate(messages):
        param = f"messages.{i}"
        role: Role = "system" if msg.role == "developer" else msg.role
        if msg.content is None and not (role == "assistant" and msg.tool_calls):
            raise _invalid(
                f"a {msg.role} message needs content",
                f"{param}.content",
                "give every message a content; only an assistant's tool-call turn may omit it",
            )
        text = _text_of(msg.content, f"{param}.content")
        calls = tuple(
            _tool_call_of(c, f"{param}.tool_calls.{j}") for j, c in enumerate(msg.tool_calls or ())
        )
        if role == "tool" and not msg.tool_call_id:
            raise _invalid(
                "a tool message needs tool_call_id",
                f"{param}.tool_call_id",
                "set tool_call_id to the id of the assistant's tool call this answers",
            )
        out.append(
            ChatMessage(
                role=role,
                content=text,
                tool_calls=calls if role == "assistant" else (),
                tool_call_id=msg.tool_call_id if role == "tool" else None,
                name=msg.name,
            )
        )
    return tuple(out)


def to_tool_specs(tools: list[ToolIn] | None) -> tuple[ToolSpec, ...]:
    empty: dict[str, Any] = {"type": "object", "properties": {}}
    return tuple(
        ToolSpec(t.function.name, t.function.description, t.function.parameters or empty)
        for t in tools or ()
    )


def to_tool_choice(choice: str | dict[str, Any] | None) -> str | None:
    """`auto` | `none` | `required` | `{"type": "function", "function": {"name": N}}` → N."""
    if choice is None or choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict):
        function = choice.get("function")
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            return str(function["name"])
    raise _invalid(
        f"tool_choice {choice!r} is not supported",
        "tool_choice",
        'use "auto", "none", "required" or {"type": "function", "function": {"name": ...}}',
    )


def last_user_text(messages: tuple[ChatMessage, ...]) -> str:
    return next((m.content for m in reversed(messages) if m.role == "user"), "")


# -- responses --------------------------------------------------------------------------------


def completion_id(stream_id: str) -> str:
    return f"chatcmpl-{stream_id}"


def finish_reason_of(ours: str | None) -> str:
    """Our finish reasons → OpenAI's (`cancelled`/`error` never reach a `done` event)."""
    return ours if ours in _FINISH_REASONS else "stop"


def usage_of(data: dict[str, Any]) -> dict[str, int]:
    usage = data.get("usage") or {}
    prompt = int(usage.get("prompt_tokens", 0))
    completion = int(usage.get("completion_tokens", 0))
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def sse_data(obj: dict[str, Any]) -> bytes:
    """One `data:` frame; JSON has no raw newlines and keeps non-ASCII text as is."""
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def tool_call_delta(index: int, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "index": index,
        "id": data["call_id"],
        "type": "function",
        "function": {"name": data["tool"], "arguments": orjson.dumps(data["args"]).decode()},
    }


@dataclass
class ChunkTranslator(Encoder):
    """Our events → `chat.completion.chunk` objects (stream=True): the Chat Completions
    encoder (`delivery/encoders.py`)."""

    stream_id: str
    created: int
    model: str
    include_usage: bool = False
    _tool_index: int = 0
    _started: bool = False
    # (model, the token frame's bytes before and after the content's JSON)
    _template: tuple[str, bytes, bytes] | None = None

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            "id": completion_id(self.stream_id),
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
        }
        if self.include_usage:
            chunk["usage"] = None
        return chunk

    def _opening(self) -> list[dict[str, Any]]:
        if self._started:
            return []
        self._started = True
        return [self._chunk({"role": "assistant", "content": ""})]

    def translate(self, kind: str, data: dict[str, Any]) -> list[dict[str, Any]]:
        """The chunks that one of our events becomes (often none)."""
        if kind == "metadata":
            self.model = str(data.get("model") or self.model)
            return self._opening()
        if kind == "token":
            return [*self._opening(), self._chunk({"content": data["content"]})]
        if kind == "tool_call":
            delta = {"tool_calls": [tool_call_delta(self._tool_index, data)]}
            self._tool_index += 1
            return [*self._opening(), self._chunk(delta)]
        if kind == "done":
            chunks = [
                *self._opening(),
                self._chunk({}, finish_reason_of(data.get("finish_reason"))),
            ]
            if self.include_usage:
                usage_chunk = self._chunk({})
                usage_chunk["choices"] = []
                usage_chunk["usage"] = usage_of(data)
                chunks.append(usage_chunk)
            return chunks
        return []  # sources, status, progress, tool progress: no OpenAI counterpart

    def frames(self, events: Sequence[Envelope]) -> bytes:
        """The SSE body for a batch of our events: their chunks as `data:` frames and, after
        a terminal event, `data: [DONE]` (an `error` becomes OpenAI's error chunk first,
        which is what the official SDK raises on). A token, the hot path, is formatted from
        a template that `sse_data(self._chunk(...))` would give byte for byte."""
        out: list[bytes] = []
        for env in events:
            kind, data = env.type, orjson.loads(env.data)
            if kind == "token" and self._started:
                out.append(self._token_frame(data["content"]))
                continue
            if kind == "error":
                body = error_body(
                    str(data.get("code", ErrorCode.INTERNAL_ERROR.value)),
                    str(data.get("message", "")),
                    suggestion=str(data.get("suggestion", "")),
                )
                out += (sse_data(body), DONE_FRAME)
                break
            out += [sse_data(chunk) for chunk in self.translate(kind, data)]
            if kind == "done":
                out.append(DONE_FRAME)
                break
        return b"".join(out)

    def error_response(self, event: dict[str, Any]) -> tuple[int, bytes]:
        """An `error` known before the first byte: OpenAI's HTTP status and error body."""
        return error_response_of(event)

    def _token_frame(self, content: str) -> bytes:
        template = self._template
        if template is None or template[0] != self.model:
            sample = sse_data(self._chunk({"content": ""}))
            head, _, tail = sample.partition(b'"content":""')
            template = self._template = (self.model, head + b'"content":', tail)
        return template[1] + orjson.dumps(content) + template[2]


@dataclass
class CompletionAccumulator:
    """Our events → one `chat.completion` (stream=False)."""

    stream_id: str
    created: int
    model: str
    parts: list[str] = field(default_factory=list)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    done: dict[str, Any] | None = None
    error: dict[str, Any] | None = None

    def add(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "metadata":
            self.model = str(data.get("model") or self.model)
        elif kind == "token":
            self.parts.append(data["content"])
        elif kind == "tool_call":
            call = tool_call_delta(len(self.tool_calls), data)
            del call["index"]
            self.tool_calls.append(call)
        elif kind == "done":
            self.done = data
        elif kind == "error":
            self.error = data

    def response(self) -> dict[str, Any]:
        done = self.done or {}
        text = "".join(self.parts)
        message: dict[str, Any] = {
            "role": "assistant",
            "content": text if text or not self.tool_calls else None,
            "refusal": None,
        }
        if self.tool_calls:
            message["tool_calls"] = self.tool_calls
        return {
            "id": completion_id(self.stream_id),
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": finish_reason_of(done.get("finish_reason")),
                }
            ],
            "usage": usage_of(done),
        }


# -- errors -----------------------------------------------------------------------------------

_ERROR_TYPES: dict[str, str] = {
    ErrorCode.VALIDATION_ERROR: "invalid_request_error",
    ErrorCode.SESSION_NOT_FOUND: "invalid_request_error",
    ErrorCode.STREAM_NOT_FOUND: "invalid_request_error",
    ErrorCode.DOCUMENT_NOT_FOUND: "invalid_request_error",
    ErrorCode.CONTEXT_TOO_LONG: "invalid_request_error",
    ErrorCode.UNAUTHORIZED: "authentication_error",
    ErrorCode.PROVIDER_AUTH: "authentication_error",
    ErrorCode.RATE_LIMIT: "rate_limit_error",
    ErrorCode.PROVIDER_RATE_LIMIT: "rate_limit_error",
}

# OpenAI answers invalid requests with 400 (our native API says 422); a key the provider
# refused is an authentication error there too (401, the SDKs' AuthenticationError)
_STATUS_OVERRIDES: dict[str, int] = {
    ErrorCode.VALIDATION_ERROR: 400,
    ErrorCode.PROVIDER_AUTH: 401,
}


def error_type(code: str) -> str:
    return _ERROR_TYPES.get(code, "server_error")


def openai_status(code: str, native_status: int) -> int:
    return _STATUS_OVERRIDES.get(code, native_status)


def error_body(
    code: str, message: str, *, suggestion: str = "", param: str | None = None
) -> dict[str, Any]:
    """OpenAI's error shape; `code` is our stable code, `suggestion` says the fix."""
    return {
        "error": {
            "message": message,
            "type": error_type(code),
            "param": param,
            "code": code,
            "suggestion": suggestion,
        }
    }


def error_response_of(event: dict[str, Any]) -> tuple[int, bytes]:
    """HTTP status and OpenAI's error body for one of our `error` events (its data)."""
    code = str(event.get("code", ErrorCode.INTERNAL_ERROR.value))
    try:
        native = http_status_for(ErrorCode(code))
    except ValueError:
        native = 500
    details = event.get("details")
    param = details.get("param") if isinstance(details, dict) else None
    body = error_body(
        code,
        str(event.get("message", "")),
        suggestion=str(event.get("suggestion", "")),
        param=param if isinstance(param, str) else None,
    )
    return openai_status(code, native), orjson.dumps(body)


def not_found_body(
    message: str, *, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    """OpenAI's 404 body (`code` null for an unknown URL, `model_not_found` for a model)."""
    return {
        "error": {
            "message": message,
            "type": "invalid_request_error",
            "param": param,
            "code": code,
        }
    }


def model_entry(model_id: str, owned_by: str, created: int) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": created, "owned_by": owned_by}
