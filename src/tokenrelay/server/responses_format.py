"""The OpenAI Responses API's responses, as pure functions and plain state.

`ResponseBuilder` folds our wire events into the `response` object and says which Responses
events each one becomes; `ResponsesEncoder` sends them as SSE (`event:` + `data:` with a
`sequence_number`), a token of an open message being one frame made from a template;
`ResponseAccumulator` gives the same object for `stream: false`. Requests and ids:
`responses_request.py`. No I/O here: `routes/openai_responses.py` does that.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from tokenrelay.delivery.encoders import Encoder
from tokenrelay.errors import ErrorCode
from tokenrelay.events import Envelope
from tokenrelay.server.openai_format import error_response_of
from tokenrelay.server.responses_request import DEFAULT_ECHO, response_id

# -- responses --------------------------------------------------------------------------------

Status = Literal["in_progress", "completed", "incomplete", "failed"]


def usage_of(data: dict[str, Any]) -> dict[str, Any]:
    usage = data.get("usage") or {}
    prompt = int(usage.get("prompt_tokens", 0))
    completion = int(usage.get("completion_tokens", 0))
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + completion,
    }


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


@dataclass
class ResponseBuilder:
    """Our events → the `response` object, and the Responses events each one makes (dicts
    without `sequence_number`, which the encoder adds). The hot path (a token of an open
    message) is the encoder's own; this is called for everything else."""

    stream_id: str
    created_at: int
    model: str
    echo: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_ECHO))
    id: str = ""
    output: list[dict[str, Any]] = field(default_factory=list)
    status: Status = "in_progress"
    usage: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    incomplete: dict[str, Any] | None = None
    created: bool = False
    # the open message's text pieces, each as its JSON string (the encoder takes a token's
    # straight from the log's JSON: nothing is decoded per token)
    parts: list[str] | None = None
    open_id: str = ""  # the open message's item id

    def __post_init__(self) -> None:
        self.id = self.id or response_id(self.stream_id, "", "")

    def response(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": self.status,
            "error": self.error,
            "incomplete_details": self.incomplete,
            "model": self.model,
            "output": self.output,
            "usage": self.usage,
            **self.echo,
        }

    def _suffix(self) -> str:
        return self.id.removeprefix("resp_")

    def start(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        """`metadata`: the answering model and the ids; the response is created."""
        self.model = str(data.get("model") or self.model)
        self.id = response_id(
            self.stream_id, str(data.get("session_id") or ""), str(data.get("message_id") or "")
        )
        return self._create()

    def _create(self) -> list[dict[str, Any]]:
        if self.created:
            return []
        self.created = True
        snapshot = self.response()
        return [
            {"type": "response.created", "response": snapshot},
            {"type": "response.in_progress", "response": snapshot},
        ]

    def open_message(self) -> list[dict[str, Any]]:
        """A message item with one empty output_text part (before its first token)."""
        events = self._create()
        index = len(self.output)
        item_id = f"msg_{self._suffix()}_{index}"
        item = {"id": item_id, "type": "message", "status": "in_progress", "role": "assistant"}
        self.output.append({**item, "content": []})
        self.parts = []
        self.open_id = item_id
        events += [
            {
                "type": "response.output_item.added",
                "output_index": index,
                "item": {**item, "content": []},
            },
            {
                "type": "response.content_part.added",
                "item_id": item_id,
                "output_index": index,
                "content_index": 0,
                "part": _text_part(""),
            },
        ]
        return events

    def text(self, content: str) -> list[dict[str, Any]]:
        events = self.open_message() if self.parts is None else []
        assert self.parts is not None
        self.parts.append(orjson.dumps(content).decode())
        index = len(self.output) - 1
        events.append(
            {
                "type": "response.output_text.delta",
                "item_id": self.open_id,
                "output_index": index,
                "content_index": 0,
                "delta": content,
                "logprobs": [],
            }
        )
        return events

    def close_message(self, status: Status = "completed") -> list[dict[str, Any]]:
        if self.parts is None:
            return []
        text = "".join(orjson.loads("[" + ",".join(self.parts) + "]"))
        self.parts = None
        index = len(self.output) - 1
        item = self.output[index]
        item["status"] = status
        item["content"] = [_text_part(text)]
        item_id = item["id"]
        return [
            {
                "type": "response.output_text.done",
                "item_id": item_id,
                "output_index": index,
                "content_index": 0,
                "text": text,
                "logprobs": [],
            },
            {
                "type": "response.content_part.done",
                "item_id": item_id,
                "output_index": index,
                "content_index": 0,
                "part": _text_part(text),
            },
            {"type": "response.output_item.done", "output_index": index, "item": item},
        ]

    def tool_call(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        events = [*self._create(), *self.close_message()]
        index = len(self.output)
        item_id = f"fc_{self._suffix()}_{index}"
        arguments = orjson.dumps(data.get("args") or {}).decode()
        item = {
            "id": item_id,
            "type": "function_call",
            "status": "in_progress",
            "call_id": str(data["call_id"]),
            "name": str(data["tool"]),
            "arguments": "",
        }
        done = {**item, "status": "completed", "arguments": arguments}
        self.output.append(done)
        return [
            *events,
            {"type": "response.output_item.added", "output_index": index, "item": item},
            {
                "type": "response.function_call_arguments.delta",
                "item_id": item_id,
                "output_index": index,
                "delta": arguments,
            },
            {
                "type": "response.function_call_arguments.done",
                "item_id": item_id,
                "output_index": index,
                "name": item["name"],
                "arguments": arguments,
            },
            {"type": "response.output_item.done", "output_index": index, "item": done},
        ]

    def finish(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        """`done`: the items close; `response.completed` (or `.incomplete` at the limit)."""
        length = data.get("finish_reason") == "length"
        events = [*self._create(), *self.close_message("incomplete" if length else "completed")]
        self.usage = usage_of(data)
        if length:
            self.status = "incomplete"
            self.incomplete = {"reason": "max_output_tokens"}
            return [*events, {"type": "response.incomplete", "response": self.response()}]
        self.status = "completed"
        return [*events, {"type": "response.completed", "response": self.response()}]

    def fail(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        """`error`: `response.failed` with the output so far; before the response was
        created (nothing to fail), OpenAI's `error` event."""
        code = str(data.get("code", ErrorCode.INTERNAL_ERROR.value))
        message = str(data.get("message", ""))
        if not self.created:
            return [{"type": "error", "code": code, "message": message, "param": None}]
        events = self.close_message("incomplete")
        self.status = "failed"
        self.error = {"code": code, "message": message}
        return [*events, {"type": "response.failed", "response": self.response()}]

    def add(self, kind: str, data: dict[str, Any]) -> list[dict[str, Any]]:
        """The Responses events of one of our events (often none)."""
        if kind == "metadata":
            return self.start(data)
        if kind == "token":
            return self.text(data["content"])
        if kind == "tool_call":
            return self.tool_call(data)
        if kind == "done":
            return self.finish(data)
        if kind == "error":
            return self.fail(data)
        return []  # sources, status, progress, tool progress: no Responses counterpart


_TOKEN_HEAD = '{"type":"token","content":'
_TOKEN_TAIL = ',"index":'


def _content_json(data: str) -> str:
    """A token event's `content`, as the JSON string it is in the event's JSON
    (`events.token_json`, or a `TokenEvent`'s dump: the same field order)."""
    end = data.rfind(_TOKEN_TAIL)
    if data.startswith(_TOKEN_HEAD) and end > 0:
        return data[len(_TOKEN_HEAD) : end]
    return orjson.dumps(orjson.loads(data)["content"]).decode()


@dataclass
class ResponsesEncoder(Encoder):
    """Our events → the Responses stream (`stream: true`): `event: <type>` and `data:` with
    the `sequence_number`, numbered from 0. A token of an open message is one frame made
    from a template and the token's content as the log holds it in JSON: one f-string per
    token, nothing parsed."""

    builder: ResponseBuilder
    _seq: int = 0
    _template: tuple[str, str] | None = None  # (item id, the delta frame's head)

    def _frame(self, event: dict[str, Any]) -> bytes:
        event["sequence_number"] = self._seq
        self._seq += 1
        kind: str = event["type"]
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"

    def frames(self, events: Sequence[Envelope]) -> bytes:
        """The SSE body for a batch of our events (the stream just ends after the terminal
        event: the Responses API has no `[DONE]`)."""
        out: list[bytes] = []
        builder = self.builder
        for env in events:
            kind = env.type
            if kind == "token" and builder.parts is not None:
                content = _content_json(env.data)
                builder.parts.append(content)
                out.append(self._token_frame(content))
                continue
            out += [self._frame(e) for e in builder.add(kind, orjson.loads(env.data))]
            if env.terminal:
                break
        return b"".join(out)

    def _token_frame(self, content: str) -> bytes:
        """The delta frame of a token whose text is `content`, a JSON string."""
        item_id = self.builder.open_id
        template = self._template
        if template is None or template[0] is not item_id:
            index = len(self.builder.output) - 1
            head = (
                "event: response.output_text.delta\ndata: "
                '{"type":"response.output_text.delta","item_id":'
                f'{orjson.dumps(item_id).decode()},"output_index":{index},'
                '"content_index":0,"logprobs":[],"delta":'
            )
            template = self._template = (item_id, head)
        seq = self._seq
        self._seq = seq + 1
        return f'{template[1]}{content},"sequence_number":{seq}}}\n\n'.encode()

    def error_response(self, event: dict[str, Any]) -> tuple[int, bytes]:
        """An `error` known before the first byte: OpenAI's HTTP status and error body."""
        return error_response_of(event)


@dataclass
class ResponseAccumulator:
    """Our events → one `response` object (`stream: false`)."""

    builder: ResponseBuilder
    error: dict[str, Any] | None = None

    def add(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "error":
            self.error = data
        self.builder.add(kind, data)

    def response(self) -> dict[str, Any]:
        return self.builder.response()
