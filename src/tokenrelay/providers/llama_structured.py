"""Grammar-constrained JSON answers for the local model, and the constraint type tool calls
share (`llama_tools`).

`response_format` is `{"type": "json_object"}` (any JSON object) or
`{"type": "json_schema", "json_schema": {"schema": {...}}}`: a llama.cpp GBNF grammar built
from the JSON schema with llama-cpp-python's `json_schema_to_gbnf` makes the output always
parse as JSON, and the text deltas are that JSON.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tokenrelay.errors import ValidationError
from tokenrelay.i18n import tr
from tokenrelay.providers.base import ChatMessage
from tokenrelay.providers.llama_runtime import import_llama_cpp


@dataclass(frozen=True, slots=True)
class Constraint:
    """How one request's output is constrained: the grammar and a system-prompt hint; in
    tool mode the reply is a call or an answer (`llama_tools.ToolReply`)."""

    grammar: str
    instructions: str
    tool_mode: bool


def schema_to_grammar(schema: dict[str, Any]) -> str:
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


def format_constraint(response_format: dict[str, Any] | None) -> Constraint | None:
    """The constraint a `response_format` asks for, or None for free text."""
    fmt_schema = response_format_schema(response_format) if response_format else None
    if fmt_schema is None:
        return None
    schema_text = json.dumps(fmt_schema, ensure_ascii=False)
    hint = f"Reply only with JSON matching this schema: {schema_text}"
    return Constraint(schema_to_grammar(fmt_schema), hint, tool_mode=False)


def with_instructions(messages: Sequence[ChatMessage], text: str) -> tuple[ChatMessage, ...]:
    """Add `text` to the system message (creating one first when there is none)."""
    if not text:
        return tuple(messages)
    if messages and messages[0].role == "system":
        first = messages[0]
        merged = ChatMessage(role="system", content=f"{first.content}\n\n{text}".strip())
        return (merged, *messages[1:])
    return (ChatMessage(role="system", content=text), *messages)
