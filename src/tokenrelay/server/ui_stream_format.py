"""The AI SDK's UI message stream (what `useChat` reads) as an encoder of our events (pure).

The wire format is the `ai` package's `uiMessageChunkSchema` (ai 7.0.x,
`src/ui-message-stream/ui-message-chunks.ts`): SSE whose every `data:` line is one JSON chunk,
the response marked by the header `x-vercel-ai-ui-message-stream: v1`, the body ended by
`data: [DONE]`. One `UIMessageStreamEncoder` per response, fed every event of one stream in
order from its first (a resume replays from the start: the AI SDK rebuilds the message from
the replay). Our events map to chunks as follows:

- `metadata`: `start` (messageId: the answer's id), `message-metadata` (streamId, sessionId,
  traceId, provider, model), `start-step`;
- `token`: `text-start` before the first of a text part, then `text-delta`;
- `tool_call`: `text-end` of an open text part, `tool-input-start`, `tool-input-delta` (the
  arguments' JSON), `tool-input-available`;
- `tool_progress`: `data-tool-progress`, id = the call id (each message replaces the last);
- `tool_result`: `tool-output-available`, or `tool-output-error` when the tool failed; the
  model's next output opens a new step (`finish-step`, `start-step`);
- `sources`: `source-url` for a document whose source is a URL, else `source-document`;
- `status`, `progress`, `complete`: `data-status`, `data-progress`, `data-complete`, each with
  a fixed id (updated in place);
- `done`: `text-end`, `finish-step`, `message-metadata` (finishReason, usage, ttftMs,
  durationMs, historyLength), `finish`, `[DONE]`;
- `error` CANCELLED (a stop): `text-end`, `finish-step`, `abort` (reason), `finish`
  (finishReason `other`), `[DONE]`;
- any other `error`: `text-end`, `finish-step`, `message-metadata` (error: code, message,
  suggestion, retryable, retryAfterS), `error` (errorText), `finish` (finishReason `error`),
  `[DONE]`.

A token is the hot path: its `text-delta` line is formatted from the token's own JSON (the
content's JSON text is cut out of it, not parsed and dumped again), one f-string per token.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from typing import Any

import orjson

from tokenrelay.delivery.encoders import Encoder
from tokenrelay.events import Envelope

UI_STREAM_HEADERS = {"x-vercel-ai-ui-message-stream": "v1"}
"""The response header that tells the AI SDK this is a UI message stream."""

END = "data: [DONE]\n\n"

# the AI SDK's finish reasons (`FinishReason`); ours with `_` for `-`, anything else `other`
_FINISH_REASONS = frozenset(
    {"stop", "length", "content-filter", "tool-calls", "error", "interrupted", "other"}
)

# a token event's JSON as `events.token_json` writes it: the content's JSON text sits between
_TOKEN_HEAD = '{"type":"token","content":'
_TOKEN_CUT = len(_TOKEN_HEAD)
_TOKEN_TAIL = ',"index":'


def chunk(value: dict[str, Any]) -> str:
    """One chunk as its SSE frame."""
    return f"data: {orjson.dumps(value).decode()}\n\n"


def finish_reason(ours: str | None) -> str:
    """Our finish reason as one of the AI SDK's (`tool_calls` → `tool-calls`, else `other`)."""
    mapped = (ours or "stop").replace("_", "-")
    return mapped if mapped in _FINISH_REASONS else "other"


def source_chunk(doc: dict[str, Any]) -> dict[str, Any]:
    """One entry of our `sources` event as a `source-url` or `source-document` chunk."""
    metadata = doc.get("metadata") or {}
    extra = {
        "tokenrelay": {
            "snippet": doc.get("snippet", ""),
            "score": doc.get("score", 0.0),
            "metadata": metadata,
        }
    }
    source = metadata.get("source")
    title = str(doc.get("title") or "")
    if isinstance(source, str) and source.startswith(("http://", "https://")):
        return {
            "type": "source-url",
            "sourceId": str(doc["id"]),
            "url": source,
            "title": title,
            "providerMetadata": extra,
        }
    value: dict[str, Any] = {
        "type": "source-document",
        "sourceId": str(doc["id"]),
        "mediaType": "text/plain",
        "title": title,
        "providerMetadata": extra,
    }
    if isinstance(source, str) and source:
        value["filename"] = posixpath.basename(source.replace("\\", "/"))
    return value


def data_chunk(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    """A `tool_progress`, `status`, `progress` or `complete` event as its data chunk (and the
    data part the AI SDK makes of it): `data-tool-progress` with the call id as its id, the
    others with a fixed id; a later chunk with the same type and id replaces the part."""
    if kind == "tool_progress":
        value = {"toolCallId": data["call_id"], "tool": data["tool"], "message": data["message"]}
        return {"type": "data-tool-progress", "id": data["call_id"], "data": value}
    if kind == "complete":
        return {"type": "data-complete", "id": kind, "data": data["result"]}
    value = {k: v for k, v in data.items() if k != "type"}
    return {"type": f"data-{kind}", "id": kind, "data": value}


def _token_delta(data: str) -> str:
    """The content's JSON text of a token event's JSON."""
    if data.startswith(_TOKEN_HEAD):
        end = data.rfind(_TOKEN_TAIL)
        if end > _TOKEN_CUT:
            return data[_TOKEN_CUT:end]
    return orjson.dumps(orjson.loads(data)["content"]).decode()  # another writer's JSON


class UIMessageStreamEncoder(Encoder):
    """The chunks of one stream, for one response (an encoder: delivery/encoders.py): it keeps
    which text part and step are open, so it sees every event once, in order."""

    __slots__ = ("_ended", "_new_step_due", "_started", "_step", "_text", "_texts")

    def __init__(self) -> None:
        self._started = False
        self._step = False  # a step is open
        self._new_step_due = False  # tool results came: the model's next output is a new step
        self._text: str | None = None  # the id of the open text part
        self._texts = 0
        self._ended = False

    def frames(self, events: Sequence[Envelope]) -> bytes:
        if len(events) == 1 and self._text is not None and events[0].type == "token":
            delta = _token_delta(events[0].data)  # the hot path: one token, a part open
            return f'data: {{"type":"text-delta","id":"{self._text}","delta":{delta}}}\n\n'.encode()
        out: list[str] = []
        for env in events:
            if env.type == "token":
                text_id = self._text or self._open_text(out)
                delta = _token_delta(env.data)
                out.append(f'data: {{"type":"text-delta","id":"{text_id}","delta":{delta}}}\n\n')
            elif not self._ended:
                self._event(env.type, orjson.loads(env.data), out)
        return "".join(out).encode()

    # -- parts and steps -------------------------------------------------------------------

    def _open_text(self, out: list[str]) -> str:
        self._output_begins(out)
        self._texts += 1
        text_id = self._text = f"text-{self._texts}"
        out.append(f'data: {{"type":"text-start","id":"{text_id}"}}\n\n')
        return text_id

    def _close_text(self, out: list[str]) -> None:
        if self._text is not None:
            out.append(f'data: {{"type":"text-end","id":"{self._text}"}}\n\n')
            self._text = None

    def _output_begins(self, out: list[str]) -> None:
        """The model outputs text or a tool call: in the open step, or a new one after tool
        results."""
        self._begin(out)
        if self._new_step_due:
            self._new_step_due = False
            if self._step:
                out.append('data: {"type":"finish-step"}\n\n')
            self._step = False
        if not self._step:
            self._step = True
            out.append('data: {"type":"start-step"}\n\n')

    def _begin(self, out: list[str], value: dict[str, Any] | None = None) -> None:
        if not self._started:
            self._started = True
            out.append(chunk(value or {"type": "start"}))

    def _end(self, out: list[str]) -> None:
        self._close_text(out)
        if self._step:
            self._step = False
            out.append('data: {"type":"finish-step"}\n\n')

    # -- events --------------------------------------------------------------------------

    def _event(self, kind: str, data: dict[str, Any], out: list[str]) -> None:
        if kind == "metadata":
            self._begin(out, {"type": "start", "messageId": data["message_id"]})
            meta = {
                "streamId": data["stream_id"],
                "sessionId": data["session_id"],
                "traceId": data["trace_id"],
                "provider": data["provider"],
                "model": data["model"],
            }
            out.append(chunk({"type": "message-metadata", "messageMetadata": meta}))
            if not self._step:
                self._step = True
                out.append('data: {"type":"start-step"}\n\n')
        elif kind == "tool_call":
            self._close_text(out)
            self._output_begins(out)
            call_id, name, args = data["call_id"], data["tool"], data["args"]
            out.append(chunk({"type": "tool-input-start", "toolCallId": call_id, "toolName": name}))
            delta = orjson.dumps(args).decode()
            out.append(
                chunk({"type": "tool-input-delta", "toolCallId": call_id, "inputTextDelta": delta})
            )
            out.append(
                chunk(
                    {
                        "type": "tool-input-available",
                        "toolCallId": call_id,
                        "toolName": name,
                        "input": args,
                    }
                )
            )
        elif kind in ("tool_progress", "status", "progress", "complete"):
            self._begin(out)
            out.append(chunk(data_chunk(kind, data)))
        elif kind == "tool_result":
            self._begin(out)
            self._new_step_due = True
            if data.get("error") is not None:
                failed = {
                    "type": "tool-output-error",
                    "toolCallId": data["call_id"],
                    "errorText": str(data["error"]),
                }
                out.append(chunk(failed))
            else:
                result = data.get("result")
                out.append(
                    chunk(
                        {
                            "type": "tool-output-available",
                            "toolCallId": data["call_id"],
                            "output": result,
                        }
                    )
                )
        elif kind == "sources":
            self._begin(out)
            out.extend(chunk(source_chunk(doc)) for doc in data["documents"])
        elif kind == "done":
            self._done(data, out)
        elif kind == "error":
            self._error(data, out)

    def _done(self, data: dict[str, Any], out: list[str]) -> None:
        self._begin(out)
        self._end(out)
        usage = data.get("usage") or {}
        prompt, completion = usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)
        ttft = data.get("ttft_s")
        meta = {
            "finishReason": data.get("finish_reason"),
            "usage": {
                "inputTokens": prompt,
                "outputTokens": completion,
                "totalTokens": prompt + completion,
            },
            "ttftMs": round(ttft * 1000, 1) if ttft is not None else None,
            "durationMs": round(float(data.get("processing_time_s", 0.0)) * 1000, 1),
            "historyLength": data.get("history_length"),
        }
        out.append(chunk({"type": "message-metadata", "messageMetadata": meta}))
        out.append(
            chunk({"type": "finish", "finishReason": finish_reason(data.get("finish_reason"))})
        )
        out.append(END)
        self._ended = True

    def _error(self, data: dict[str, Any], out: list[str]) -> None:
        self._begin(out)
        self._end(out)
        message = str(data.get("message") or "the answer failed")
        if data.get("code") == "CANCELLED":
            out.append(chunk({"type": "abort", "reason": message}))
            out.append('data: {"type":"finish","finishReason":"other"}\n\n')
        else:
            error = {
                "code": data.get("code"),
                "message": message,
                "suggestion": data.get("suggestion", ""),
                "retryable": bool(data.get("retryable")),
                "retryAfterS": data.get("retry_after_s"),
            }
            out.append(chunk({"type": "message-metadata", "messageMetadata": {"error": error}}))
            out.append(chunk({"type": "error", "errorText": message}))
            out.append('data: {"type":"finish","finishReason":"error"}\n\n')
        out.append(END)
        self._ended = True
