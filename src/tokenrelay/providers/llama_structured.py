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
  tools). The adapter buffers the JSON, then yields one `ToolCallPart` + `Finish("tool_calls")`
  or one `TextDelta(answer)` + `Finish("stop")`. An assistant message carrying `tool_calls` is
  shown to the model in the same JSON form (see `chat_template.message_to_dict`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tokenrelay.errors import ErrorCode, ProviderError, ValidationError
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
            f"unsupported JSON schema for constrained output: {e}",
            suggestion="use plain object/array/string/number/enum schemas",
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
        f"unsupported response_format {response_format!r}",
        suggestion='use {"type": "json_object"} or '
        '{"type": "json_schema", "json_schema": {"schema": {...}}}',
    )


def tool_schema(tools: Sequence[ToolSpec], tool_choice: str | None) -> dict[str, Any]:
    """The JSON schema of one tool-mode reply (see module docstring)."""
    chosen = [t for t in tools if tool_choice in (None, "auto", "required", t.name)]
    if not chosen:
        raise ValidationError(
            f"tool_choice {tool_choice!r} names no offered tool",
            suggestion="use auto, none, required or one of: " + ", ".join(t.name for t in tools),
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


def parse_tool_reply(text: str) -> ToolCall | str:
    """A tool-mode reply as a ToolCall, or the direct answer text."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ProviderError(
            "the local model's tool reply was cut off before the JSON was complete",
            suggestion="raise max_tokens for tool calls",
            code=ErrorCode.PROVIDER_ERROR,
            retryable=True,
        ) from e
    if isinstance(data, dict) and isinstance(data.get("tool"), str):
        arguments = data.get("arguments")
        return ToolCall(
            id=f"call_{uuid.uuid4().hex[:12]}",
            name=data["tool"],
            arguments=arguments if isinstance(arguments, dict) else {},
        )
    if isinstance(data, dict) and isinstance(data.get("answer"), str):
        return str(data["answer"])
    return text
