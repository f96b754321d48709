"""The OpenAI Responses API's requests, as pure functions: `ResponsesRequest` and its mapping
to our `ChatMessage`/`ToolSpec` (`input` as a string or as items: messages, `function_call`,
`function_call_output`, and `item_reference`s the route has already looked up), what we
refuse by name, and the ids of responses and their output items.

Ids: a stored response is `resp_<session id><first answer message id>`, so the route finds it
in the session store (`GET /v1/responses/{id}`, `previous_response_id`, `item_reference`s); an
unstored one is `resp_<stream id>`. Output items are `msg_…`/`fc_…` of the response id and
their index. The responses themselves: `responses_format.py`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tokenrelay.errors import ValidationError
from tokenrelay.providers.base import ChatMessage, ToolCall, ToolSpec
from tokenrelay.server.openai_format import TokenRelayExtras

# -- requests ---------------------------------------------------------------------------------


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class TextConfig(_Open):
    format: dict[str, Any] | None = None


class ResponsesRequest(_Open):
    """`POST /v1/responses`. Fields that change nothing in the answer (`metadata`, `user`,
    `include`, `truncation`, `parallel_tool_calls`, …) are accepted and ignored, as OpenAI's
    own optional ones are; those we cannot honour are refused by name (`unsupported`)."""

    model: str = Field(min_length=1, max_length=200)
    input: str | list[dict[str, Any]]
    instructions: str | None = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    max_output_tokens: int | None = Field(default=None, ge=1, le=32768)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, ge=0.0, le=1.0)
    text: TextConfig | None = None
    store: bool | None = None
    previous_response_id: str | None = None
    parallel_tool_calls: bool | None = None
    metadata: dict[str, str] | None = None
    tokenrelay: TokenRelayExtras | None = None


# parameters of the Responses API that tokenrelay refuses (400 naming them) when they ask for
# something: (field, the value that asks nothing)
_REFUSED: tuple[tuple[str, object], ...] = (
    ("background", False),
    ("conversation", None),
    ("prompt", None),
    ("top_logprobs", 0),
    ("max_tool_calls", None),
)


def invalid(message: str, param: str | None, suggestion: str) -> ValidationError:
    return ValidationError(message, suggestion=suggestion, details={"param": param})


def check_supported(body: ResponsesRequest) -> None:
    """Refuse, by name, what the request asks for and tokenrelay cannot do."""
    extra = body.model_extra or {}
    for name, neutral in _REFUSED:
        value = extra.get(name)
        if value is not None and value != neutral:
            raise invalid(
                f"{name} is not supported by tokenrelay",
                name,
                f"leave {name} out (docs/client.md lists what the Responses API accepts)",
            )
    if body.stream_options is not None and not body.stream:
        raise invalid(
            "stream_options is only allowed when stream is true",
            "stream_options",
            "set stream: true, or leave stream_options out",
        )


def _text_of(content: Any, param: str) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        raise invalid("content must be a string or a list of parts", param, "send text content")
    texts: list[str] = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text") and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "refusal" and isinstance(part.get("refusal"), str):
            texts.append(part["refusal"])
        else:
            raise invalid(
                f"content part of type {kind!r} is not supported",
                f"{param}.{j}.type",
                "send text content only (a string, or parts of type 'input_text')",
            )
    return "".join(texts)


def _arguments(text: Any, param: str) -> dict[str, Any]:
    try:
        arguments = json.loads(text or "{}") if isinstance(text, str) else None
    except ValueError:
        arguments = None
    if not isinstance(arguments, dict):
        raise invalid(
            "a function_call's arguments are not the JSON text of an object",
            param,
            "send arguments as the model produced them (a JSON object as a string)",
        )
    return arguments


def to_chat_messages(
    items: str | list[dict[str, Any]],
    instructions: str | None = None,
    references: dict[str, dict[str, Any]] | None = None,
) -> list[ChatMessage]:
    """`instructions` + `input` → our messages. `function_call` items join the assistant
    message before them (or make one); `references` holds the items of `item_reference`s."""
    out: list[ChatMessage] = []
    if instructions:
        out.append(ChatMessage("system", instructions))
    if isinstance(items, str):
        out.append(ChatMessage("user", items))
        return out
    refs = references or {}
    for i, given in enumerate(items):
        param = f"input.{i}"
        item = given
        if item.get("type") == "item_reference":
            found = refs.get(str(item.get("id")))
            if found is None:
                raise invalid(
                    f"no stored item {item.get('id')!r}",
                    f"{param}.id",
                    "refer only to items of stored responses (store: true), or send the item",
                )
            item = found
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "system", "developer", "assistant"):
                raise invalid(
                    f"a message's role {role!r} is not supported",
                    f"{param}.role",
                    "use user, system, developer or assistant",
                )
            text = _text_of(item.get("content"), f"{param}.content")
            out.append(ChatMessage("system" if role == "developer" else role, text))
        elif kind == "function_call":
            call = ToolCall(
                str(item.get("call_id") or ""),
                str(item.get("name") or ""),
                _arguments(item.get("arguments"), f"{param}.arguments"),
            )
            last = out[-1] if out else None
            if last is not None and last.role == "assistant":
                out[-1] = ChatMessage(
                    "assistant", last.content, tool_calls=(*last.tool_calls, call)
                )
            else:
                out.append(ChatMessage("assistant", "", tool_calls=(call,)))
        elif kind == "function_call_output":
            output = item.get("output")
            text = output if isinstance(output, str) else _text_of(output, f"{param}.output")
            out.append(ChatMessage("tool", text, tool_call_id=str(item.get("call_id") or "")))
        elif kind == "reasoning":
            continue  # nothing of ours to give back to the model
        else:
            raise invalid(
                f"input items of type {kind!r} are not supported",
                f"{param}.type",
                "send message, function_call and function_call_output items",
            )
    return out


def references_in(items: str | list[dict[str, Any]]) -> list[str]:
    """The ids of the `item_reference`s in `input`, for the route to look up."""
    if isinstance(items, str):
        return []
    return [str(i.get("id")) for i in items if i.get("type") == "item_reference"]


def to_tool_specs(tools: list[dict[str, Any]] | None) -> tuple[ToolSpec, ...]:
    specs: list[ToolSpec] = []
    for i, tool in enumerate(tools or ()):
        if tool.get("type") != "function" or not isinstance(tool.get("name"), str):
            raise invalid(
                f"tools of type {tool.get('type')!r} are not supported",
                f"tools.{i}.type",
                "offer function tools only: {type: 'function', name, parameters}",
            )
        parameters = tool.get("parameters") or {"type": "object", "properties": {}}
        specs.append(ToolSpec(tool["name"], str(tool.get("description") or ""), parameters))
    return tuple(specs)


def to_tool_choice(choice: str | dict[str, Any] | None) -> str | None:
    """`auto` | `none` | `required` | `{"type": "function", "name": N}` → N."""
    if choice is None or choice in ("auto", "none", "required"):
        return choice
    named = isinstance(choice, dict) and isinstance(choice.get("name"), str)
    if named and isinstance(choice, dict) and choice.get("type") == "function":
        return str(choice["name"])
    raise invalid(
        f"tool_choice {choice!r} is not supported",
        "tool_choice",
        'use "auto", "none", "required" or {"type": "function", "name": ...}',
    )


def to_response_format(text: TextConfig | None) -> dict[str, Any] | None:
    """`text.format` → our `response_format` (Chat Completions' shape)."""
    fmt = text.format if text is not None else None
    if fmt is None or fmt.get("type") == "text":
        return None
    if fmt.get("type") == "json_object":
        return {"type": "json_object"}
    if fmt.get("type") == "json_schema" and isinstance(fmt.get("schema"), dict):
        spec = {"name": fmt.get("name") or "response", "schema": fmt["schema"]}
        if isinstance(fmt.get("strict"), bool):
            spec["strict"] = fmt["strict"]
        return {"type": "json_schema", "json_schema": spec}
    raise invalid(
        f"text.format of type {fmt.get('type')!r} is not supported",
        "text.format",
        "use {type: 'text'}, {type: 'json_object'} or {type: 'json_schema', name, schema}",
    )


def echo_of(body: ResponsesRequest) -> dict[str, Any]:
    """The request's settings as a `response` object repeats them."""
    return {
        "instructions": body.instructions,
        "max_output_tokens": body.max_output_tokens,
        "metadata": body.metadata or {},
        "parallel_tool_calls": body.parallel_tool_calls is not False,
        "previous_response_id": body.previous_response_id,
        "store": body.store is not False,
        "temperature": body.temperature,
        "text": {"format": (body.text.format if body.text else None) or {"type": "text"}},
        "tool_choice": body.tool_choice or "auto",
        "tools": body.tools or [],
        "top_p": body.top_p,
    }


DEFAULT_ECHO: dict[str, Any] = {
    "instructions": None,
    "max_output_tokens": None,
    "metadata": {},
    "parallel_tool_calls": True,
    "previous_response_id": None,
    "store": True,
    "temperature": None,
    "text": {"format": {"type": "text"}},
    "tool_choice": "auto",
    "tools": [],
    "top_p": None,
}


# -- ids --------------------------------------------------------------------------------------

_HEX_ID = 32  # sessions.base.new_id


@dataclass(frozen=True, slots=True)
class StoredRef:
    """Where a stored response lives: its session and its first answer message."""

    session_id: str
    message_id: str


def response_id(stream_id: str, session_id: str, message_id: str) -> str:
    return f"resp_{session_id}{message_id}" if session_id else f"resp_{stream_id}"


def stored_ref(resp_id: str) -> StoredRef | None:
    """The session and message of a stored response's id; None for any other id."""
    body = resp_id.removeprefix("resp_")
    if body == resp_id or len(body) != 2 * _HEX_ID or not _is_hex(body):
        return None
    return StoredRef(body[:_HEX_ID], body[_HEX_ID:])


def item_ref(item_id: str) -> tuple[StoredRef, int] | None:
    """(stored response, output index) of an output item id (`msg_…_k`, `fc_…_k`)."""
    kind, _, rest = item_id.partition("_")
    body, _, index = rest.rpartition("_")
    ref = stored_ref(f"resp_{body}")
    if kind not in ("msg", "fc") or ref is None or not index.isdigit():
        return None
    return ref, int(index)


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)
