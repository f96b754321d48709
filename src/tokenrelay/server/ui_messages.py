"""The AI SDK's UIMessages, both ways (pure): `useChat`'s request body in, a stored session out.

In: `DefaultChatTransport` (ai 7.0.x, `src/ui/http-chat-transport.ts`) posts
`{...body, id, messages, trigger, messageId}`: the chat id (our session id), the chat's
UIMessages, `submit-message` or `regenerate-message`, and the id of the message concerned.
The server keeps the history, so only the last user message's text parts are read: a client
that sends the whole list and one that sends only the new message get the same answer.

Out: a session's stored messages as UIMessages (`GET /api/ui/chat/{id}/messages`): a user
message is one text part; an assistant answer, with its tool rounds (stored as several
messages, see pipelines/chat.py), is one UIMessage whose id is its first message's (the id
the stream's `start` chunk carries, so a resumed replay replaces it): a `step-start` per
round, its text, its tool calls as `tool-<name>` parts with their outputs, and its sources.
Answers a regenerated one replaced (`superseded`) are left out.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tokenrelay.errors import ValidationError
from tokenrelay.i18n import tr
from tokenrelay.server.schemas import ID_PATTERN, ChatOptions
from tokenrelay.server.ui_stream_format import source_chunk
from tokenrelay.sessions.base import StoredMessage, is_superseded


class UIMessageIn(BaseModel):
    """One UIMessage of the request. The AI SDK's shape, which grows with its versions: other
    fields are let through and not read."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(default="", max_length=256)
    role: Literal["system", "user", "assistant"]
    parts: list[dict[str, Any]] = Field(default_factory=list, max_length=1000)


class UIChatRequest(BaseModel):
    """`POST /api/ui/chat`: what `useChat`'s `DefaultChatTransport` sends, plus our `options`
    (through the transport's `body`). Other fields are errors, as on every route of ours."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=ID_PATTERN, description="the chat id: our session id")
    messages: list[UIMessageIn] = Field(min_length=1, max_length=10_000)
    trigger: Literal["submit-message", "regenerate-message"] = "submit-message"
    messageId: str | None = Field(default=None, max_length=256)  # the SDK's name
    options: ChatOptions = Field(default_factory=ChatOptions)


def last_user_text(messages: Sequence[UIMessageIn]) -> str:
    """The text of the new user message: the text parts of the last message, a user's."""
    last = messages[-1]
    if last.role != "user":
        raise ValidationError(
            tr(
                "the last message is the {role}'s; it must be the user's new message",
                role=last.role,
            ),
            suggestion=tr("send the chat's messages ending with the user's message"),
        )
    texts = [str(p.get("text", "")) for p in last.parts if p.get("type") == "text"]
    if not texts:
        raise ValidationError(
            tr("the last message has no text part"),
            suggestion=tr("send the user's message as a text part"),
        )
    return "\n".join(texts)


def _output(content: str) -> Any:
    """A stored tool result (its JSON, maybe cut short) back as a value."""
    try:
        return json.loads(content)
    except ValueError:
        return content


def _answer_metadata(message: StoredMessage) -> dict[str, Any]:
    meta = message.metadata
    usage = meta.get("usage") or {}
    prompt, completion = usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)
    value: dict[str, Any] = {
        "status": message.status,
        "streamId": meta.get("stream_id"),
        "provider": meta.get("provider"),
        "model": meta.get("model"),
        "finishReason": meta.get("finish_reason"),
        "usage": {
            "inputTokens": prompt,
            "outputTokens": completion,
            "totalTokens": prompt + completion,
        },
    }
    if "interrupted" in meta:
        value["interrupted"] = meta["interrupted"]
    return value


def to_ui_messages(stored: Sequence[StoredMessage]) -> list[dict[str, Any]]:
    """A session's messages as UIMessages (see the module doc)."""
    out: list[dict[str, Any]] = []
    answer: dict[str, Any] | None = None
    calls: dict[str, dict[str, Any]] = {}
    for message in stored:
        if is_superseded(message) or message.role == "system":
            continue
        if message.role == "user":
            answer = None
            text = {"type": "text", "text": message.content, "state": "done"}
            out.append({"id": message.id, "role": "user", "parts": [text]})
        elif message.role == "assistant":
            if answer is None:
                answer = {"id": message.id, "role": "assistant", "parts": []}
                out.append(answer)
            parts: list[dict[str, Any]] = answer["parts"]
            parts.append({"type": "step-start"})
            if message.content:
                state = "streaming" if message.status == "streaming" else "done"
                parts.append({"type": "text", "text": message.content, "state": state})
            for call in message.metadata.get("tool_calls", []):
                part = {
                    "type": f"tool-{call['name']}",
                    "toolCallId": call["id"],
                    "state": "input-available",
                    "input": call.get("arguments", {}),
                }
                parts.append(part)
                calls[call["id"]] = part
            sources = message.metadata.get("sources")
            if sources:
                # a source part has its chunk's fields; first, as the stream sends them
                parts[1:1] = [source_chunk(doc) for doc in sources]
            answer["metadata"] = _answer_metadata(message)
        elif message.role == "tool":
            called = calls.get(str(message.metadata.get("call_id")))
            if called is None:
                continue
            output = _output(message.content)
            if message.metadata.get("error"):
                # the text the user was shown when it happened; the content is the model's
                error = message.metadata.get("error_text") or (
                    output.get("error") if isinstance(output, dict) else output
                )
                called.update(state="output-error", errorText=str(error))
            else:
                called.update(state="output-available", output=output)
    # an answer with nothing in it yet (its first token has not come) is not shown
    return [m for m in out if any(p["type"] != "step-start" for p in m["parts"])]
