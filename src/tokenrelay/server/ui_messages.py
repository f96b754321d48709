"""The AI SDK's UIMessages, both ways (pure): `useChat`'s request body in, a stored session out.

In: `DefaultChatTransport` (ai 7.0.x, `src/ui/http-chat-transport.ts`) posts
`{...body, id, messages, trigger, messageId}`: the chat id (our session id), the chat's
UIMessages, `submit-message` or `regenerate-message`, and the id of the message concerned
(with `submit-message`, the user message being edited: `Chat.sendMessage({ text, messageId })`).
The server keeps the history, so only the last user message's text parts (and its id, kept as
`ui_id`) are read: a client that sends the whole list and one that sends only the new message
get the same answer.

Out: a session's stored messages as UIMessages (`GET /api/ui/chat/{id}/messages`), the parts
the live stream made (server/ui_stream_format.py), in its order, so a page that reloads after
an answer shows what it showed live: a user message is one text part; an assistant answer,
with its tool rounds (stored as several messages, see pipelines/chat.py), is one UIMessage
whose id is its first message's (the id the stream's `start` chunk carries, so a resumed
replay replaces it). Per round: a `step-start` (the first always, a later one when the model
said or called something in it), its text, its tool calls as `tool-<name>` parts with their
outputs, then the data parts first shown in that round, each with its last value (metadata
`shown`: a call's `data-tool-progress`, `data-status`, a workflow's `data-progress` and
`data-complete`); the sources after the first `step-start`. Answers a regenerated one
replaced and edited branches (`superseded`) are left out.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tokenrelay.errors import ValidationError
from tokenrelay.i18n import tr
from tokenrelay.server.schemas import ID_PATTERN, ChatOptions
from tokenrelay.server.ui_stream_format import data_chunk, source_chunk
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
    messageId: str | None = Field(  # the SDK's name
        default=None,
        max_length=256,
        description="with `submit-message`: the user message to edit (ours, or the id the page"
        " gave it); left out for a new message",
    )
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


class _Answer:
    """One answer as a UIMessage, built from its stored messages (a tool round each), oldest
    first; `parts()` puts what was shown besides text and tools where the stream put it."""

    def __init__(self, message_id: str) -> None:
        self.message: dict[str, Any] = {"id": message_id, "role": "assistant", "parts": []}
        self.rounds: list[list[dict[str, Any]]] = []
        self.sources: list[dict[str, Any]] = []
        self.shown: list[dict[str, Any]] = []

    def add(self, message: StoredMessage, calls: dict[str, dict[str, Any]]) -> None:
        meta = message.metadata
        tool_calls = meta.get("tool_calls", [])
        parts: list[dict[str, Any]] = []
        # the first step starts with the answer; a later one only with the model's output
        if not self.rounds or message.content or tool_calls:
            parts.append({"type": "step-start"})
        if message.content:
            state = "streaming" if message.status == "streaming" else "done"
            parts.append({"type": "text", "text": message.content, "state": state})
        for call in tool_calls:
            part = {
                "type": f"tool-{call['name']}",
                "toolCallId": call["id"],
                "state": "input-available",
                "input": call.get("arguments", {}),
            }
            parts.append(part)
            calls[call["id"]] = part
        self.rounds.append(parts)
        if meta.get("sources"):
            self.sources = [source_chunk(doc) for doc in meta["sources"]]
        if meta.get("shown"):  # the latest message's: it holds all of its earlier ones'
            self.shown = meta["shown"]
        self.message["metadata"] = _answer_metadata(message)

    def parts(self) -> list[dict[str, Any]]:
        """Each round's parts, then the data parts first shown in that round (the stream sends
        a tool's progress after the round's calls, a status after its results); the sources
        after the first step's start, where the stream sends them, before any text."""
        out: list[dict[str, Any]] = []
        last = len(self.rounds) - 1
        for k, parts in enumerate(self.rounds):
            out.extend(parts)
            if k == 0:
                out[1:1] = self.sources
            out.extend(
                data_chunk(item["event"]["type"], item["event"])
                for item in self.shown
                if min(int(item["round"]), last) == k
            )
        return out


def to_ui_messages(stored: Sequence[StoredMessage]) -> list[dict[str, Any]]:
    """A session's messages as UIMessages (see the module doc)."""
    out: list[dict[str, Any]] = []
    answers: list[_Answer] = []
    answer: _Answer | None = None
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
                answer = _Answer(message.id)
                answers.append(answer)
                out.append(answer.message)
            answer.add(message, calls)
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
    for built in answers:
        built.message["parts"] = built.parts()
    # an answer with nothing in it yet (its first token has not come) is not shown
    return [m for m in out if any(p["type"] != "step-start" for p in m["parts"])]
