"""Small pure helpers shared by the remote adapters: response formats, finish reasons, JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tokenrelay.config import Settings
from tokenrelay.providers._toolcalls import RAW_ARGUMENTS_KEY
from tokenrelay.providers.base import FinishReason


@dataclass(frozen=True, slots=True)
class JsonFormat:
    """What `ProviderRequest.response_format` asks for: any JSON object, or one JSON schema."""

    schema: dict[str, Any] | None  # None: any JSON object
    name: str = "response"
    strict: bool | None = None


def json_format(response_format: dict[str, Any] | None) -> JsonFormat | None:
    """Accept `{"type": "json_object"}`, OpenAI's `{"type": "json_schema", "json_schema": {...}}`
    or a bare JSON schema (`{"type": "object", "properties": ...}`)."""
    if not response_format:
        return None
    kind = response_format.get("type")
    if kind == "json_object":
        return JsonFormat(schema=None)
    if kind == "json_schema" and isinstance(response_format.get("json_schema"), dict):
        spec: dict[str, Any] = response_format["json_schema"]
        schema = spec.get("schema")
        return JsonFormat(
            schema=schema if isinstance(schema, dict) else None,
            name=str(spec.get("name") or "response"),
            strict=spec.get("strict") if isinstance(spec.get("strict"), bool) else None,
        )
    if kind == "text":
        return None
    return JsonFormat(schema=response_format)


def arguments_text(arguments: dict[str, Any]) -> str:
    """Tool-call arguments back to JSON text; arguments kept raw (malformed) go back as sent."""
    raw = arguments.get(RAW_ARGUMENTS_KEY)
    if isinstance(raw, str) and len(arguments) == 1:
        return raw
    return json.dumps(arguments, ensure_ascii=False)


def settle_finish(reason: FinishReason, *, called_tools: bool) -> FinishReason:
    """Some servers (Ollama, Gemini) say "stop" after a tool call; report "tool_calls" then."""
    if called_tools and reason == "stop":
        return "tool_calls"
    return reason


def configured_model(settings: Settings, provider: str, own: str) -> str:
    """`--model` (TOKENRELAY_MODEL) applies to the configured provider; else its own setting."""
    if settings.provider == provider and settings.model:
        return settings.model
    return own
