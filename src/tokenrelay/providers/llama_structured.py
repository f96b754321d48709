"""Grammar-constrained output for the local model: JSON answers and well-formed tool calls.

Two modes, both enforced by a llama.cpp GBNF grammar built from a JSON schema with
llama-cpp-python's `json_schema_to_gbnf`, so the output always parses as JSON:

* **Structured output** — `response_format` is `{"type": "json_object"}` (any JSON object) or
  `{"type": "json_schema", "json_schema": {"schema": {...}}}`. The text deltas are the JSON.

* **Tool mode** — the request offers `tools` and `tool_choice` is not `"none"`. The model is told
  about the tools in the system message and must answer with exactly one JSON object:

      {"tool": "<tool name>", "arguments": {...}}   to call a tool (arguments match its schema)
      {"answer": "<text>"}                          to answer the user directly

  `tool_choice="required"` (or a tool's name) leaves out the `answer` branch (or the other
  tools). A tool call is buffered, then yielded as one `ToolCallPart` + `Finish("tool_calls")`;
  a direct answer streams as `TextDelta`s of the decoded JSON string (`AnswerStreamer`) and
  ends with `Finish("stop")` (or "length" when max_tokens cut it). An assistant message
  carrying `tool_calls` is shown to the model in the same JSON form
  (see `chat_template.message_to_dict`).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tokenrelay.errors import ErrorCode, ProviderError, ValidationError
from tokenrelay.i18n import tr
from tokenrelay.providers.base import ChatMessage, ToolCall, ToolSpec
from tokenrelay.providers.llama_runtime import import_llama_cpp


@dataclass(frozen=True, slots=True)
class Constraint:
    """How one request's output is constrained: the grammar and a system-prompt hint."""

    grammar: str
    instructions: str
    tool_mode: bool


def _schema_to_grammar(schema: dict[str, Any]) -> str:
    import_llama_cpp()
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    try:
        return str(json_schema_to_gbnf(json.dumps(schema)))
    except (ValueError, KeyError, TypeError, NotImplementedError) as e:
        raise ValidationError(
            tr("unsupported JSON schema for constrained output: {error}", error=str(e)),
            suggestion=tr("use plain object/array/string/number/enum schemas"),
        ) from e


def response_format_schema(response_format: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON schema a `response_format` asks for; None for plain text."""
    kind = response_format.get("type")
    if kind in (None, "text"):
        return None
    if kind == "json_object":
        return {"type": "object"}
    if kind == "json_schema":
        spec = response_format.get("json_schema", response_format)
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if isinstance(schema, dict):
            return schema
    raise ValidationError(
        tr("unsupported response_format {value!r}", value=response_format),
        suggestion=tr(
            "use {json_object} or {json_schema}",
            json_object='{"type": "json_object"}',
            json_schema='{"type": "json_schema", "json_schema": {"schema": {...}}}',
        ),
    )


def tool_schema(tools: Sequence[ToolSpec], tool_choice: str | None) -> dict[str, Any]:
    """The JSON schema of one tool-mode reply (see module docstring)."""
    chosen = [t for t in tools if tool_choice in (None, "auto", "required", t.name)]
    if not chosen:
        raise ValidationError(
            tr("tool_choice {value!r} names no offered tool", value=tool_choice),
            suggestion=tr(
                "use auto, none, required or one of: {names}",
                names=", ".join(t.name for t in tools),
            ),
        )
    branches: list[dict[str, Any]] = [
        {
            "type": "object",
            "properties": {
                "tool": {"const": t.name},
                "arguments": t.parameters or {"type": "object"},
            },
            "required": ["tool", "arguments"],
            "additionalProperties": False,
        }
        for t in chosen
    ]
    if tool_choice in (None, "auto"):
        branches.append(
            {
                "type": "object",
                "properties": {"answer": {"type": "string"}},
                "required": ["answer"],
                "additionalProperties": False,
            }
        )
    return branches[0] if len(branches) == 1 else {"oneOf": branches}


def _tool_instructions(tools: Sequence[ToolSpec], tool_choice: str | None) -> str:
    lines = ["You can use these tools:"]
    for t in tools:
        args = json.dumps(t.parameters.get("properties", {}), ensure_ascii=False)
        lines.append(f"- {t.name}: {t.description} Arguments: {args}")
    lines.append('To use a tool reply only with {"tool": "<name>", "arguments": {...}}.')
    if tool_choice in (None, "auto"):
        lines.append('To answer directly reply only with {"answer": "<your answer>"}.')
    return "\n".join(lines)


def constraint_for(
    response_format: dict[str, Any] | None,
    tools: Sequence[ToolSpec],
    tool_choice: str | None,
) -> Constraint | None:
    """The constraint a request needs, or None for free text. Tools win over response_format."""
    if tools and tool_choice != "none":
        schema = tool_schema(tools, tool_choice)
        return Constraint(_schema_to_grammar(schema), _tool_instructions(tools, tool_choice), True)
    if response_format:
        fmt_schema = response_format_schema(response_format)
        if fmt_schema is not None:
            hint = "Reply only with JSON matching this schema: " + json.dumps(
                fmt_schema, ensure_ascii=False
            )
            return Constraint(_schema_to_grammar(fmt_schema), hint, False)
    return None


def with_instructions(messages: Sequence[ChatMessage], text: str) -> tuple[ChatMessage, ...]:
    """Add `text` to the system message (creating one first when there is none)."""
    if messages and messages[0].role == "system":
        first = messages[0]
        merged = ChatMessage(role="system", content=f"{first.content}\n\n{text}".strip())
        return (merged, *messages[1:])
    return (ChatMessage(role="system", content=text), *messages)


def parse_tool_call(text: str) -> ToolCall:
    """A complete tool-mode `{"tool": ..., "arguments": {...}}` reply as a ToolCall."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ProviderError(
            tr("the local model's tool call was cut off before its JSON was complete"),
            suggestion=tr("retry, or ask for the answer without tools"),
            code=ErrorCode.PROVIDER_ERROR,
            retryable=True,
        ) from e
    if not (isinstance(data, dict) and isinstance(data.get("tool"), str)):
        raise ProviderError(
            tr("the local model's reply is not a tool call"),
            suggestion=tr("retry"),
            code=ErrorCode.PROVIDER_ERROR,
            retryable=True,
        )
    arguments = data.get("arguments")
    return ToolCall(
        id=f"call_{uuid.uuid4().hex[:12]}",
        name=data["tool"],
        arguments=arguments if isinstance(arguments, dict) else {},
    )


_ANSWER_OPENING = re.compile(r'\s*\{\s*"answer"\s*:\s*"')
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


class AnswerStreamer:
    """Incrementally pulls the text of `{"answer": "..."}` out of a growing tool-mode reply.

    `feed(piece)` returns the newly decoded answer text (possibly empty). Until the reply is
    known to be an answer nothing is returned; a tool call never yields text.
    """

    def __init__(self) -> None:
        self._raw = ""
        self._pos = 0  # next unread index in _raw once inside the string
        self.state = "opening"  # "opening" | "answer" | "closed" | "tool"

    def feed(self, piece: str) -> str:
        self._raw += piece
        if self.state == "opening":
            match = _ANSWER_OPENING.match(self._raw)
            if match is not None:
                self.state, self._pos = "answer", match.end()
            elif '"tool"' in self._raw or not _could_open_answer(self._raw):
                self.state = "tool"
        return self._decode() if self.state == "answer" else ""

    def _decode(self) -> str:
        out: list[str] = []
        raw, i = self._raw, self._pos
        while i < len(raw):
            ch = raw[i]
            if ch == '"':
                self.state = "closed"
                i += 1
                break
            if ch != "\\":
                out.append(ch)
                i += 1
                continue
            if i + 1 >= len(raw):
                break  # wait for the escaped character
            code = raw[i + 1]
            if code == "u":
                unit = _unicode_escape(raw, i)
                if unit is None:
                    break
                char, i = unit
                out.append(char)
            else:
                out.append(_ESCAPES.get(code, code))
                i += 2
        self._pos = i
        return "".join(out)


def _unicode_escape(raw: str, i: int) -> tuple[str, int] | None:
    """Decode `\\uXXXX` (or a surrogate pair) at `raw[i]`; None until it is all there."""
    if i + 6 > len(raw):
        return None
    code = int(raw[i + 2 : i + 6], 16)
    if 0xD800 <= code < 0xDC00:
        if i + 12 > len(raw):
            return None
        low = int(raw[i + 8 : i + 12], 16) if raw[i + 6 : i + 8] == "\\u" else 0
        if 0xDC00 <= low < 0xE000:
            return chr(0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)), i + 12
        return "\ufffd", i + 6
    if 0xDC00 <= code < 0xE000:
        return "\ufffd", i + 6
    return chr(code), i + 6


def _could_open_answer(prefix: str) -> bool:
    """Whether `prefix` may still grow into the opening of an answer object."""
    compact = re.sub(r"\s+", "", prefix)
    target = '{"answer":"'
    return target.startswith(compact) or compact.startswith(target)
