"""The UI message stream encoder as a pure function of our events (server/ui_stream_format.py).
Its chunks are checked against the AI SDK itself in tests/test_ui_chat_node.py."""

from __future__ import annotations

import json
from typing import Any

import orjson

from tests.helpers import done_event
from tokenrelay.events import (
    ErrorEvent,
    MetadataEvent,
    SourcesEvent,
    TokenEvent,
    ToolCallEvent,
    ToolResultEvent,
    envelope,
    token_event,
)
from tokenrelay.server.ui_stream_format import UIMessageStreamEncoder, finish_reason


def _envelopes() -> list[Any]:
    events: list[Any] = [
        MetadataEvent(
            stream_id="s1",
            session_id="chat",
            message_id="m1",
            trace_id="t1",
            provider="scripted",
            model="x",
        ),
        SourcesEvent.model_validate(
            {
                "documents": [
                    {"id": "d1", "title": "Doc", "snippet": "s", "score": 1.0},
                    {
                        "id": "d2",
                        "title": "Web",
                        "snippet": "w",
                        "score": 0.5,
                        "metadata": {"source": "https://example.org/a"},
                    },
                ]
            }
        ),
        token_event('Let me "check"\n', 0),
        ToolCallEvent(call_id="c1", tool="calculate", args={"expression": "2+2"}),
        ToolResultEvent(call_id="c1", tool="calculate", result={"value": 4}),
        token_event("서울은 ", 1),
        TokenEvent(content="4 </script>", index=2),  # a model's own JSON, not token_json's
        done_event(),
    ]
    return [envelope(i + 1, e) for i, e in enumerate(events)]


def _chunks(raw: bytes) -> list[Any]:
    lines = raw.decode().split("\n\n")
    assert lines[-1] == "" and lines[-2] == "data: [DONE]"
    return [json.loads(line.removeprefix("data: ")) for line in lines[:-2]]


def test_the_same_bytes_whatever_the_batches() -> None:
    """The reader hands the encoder events in batches of any size (a push, a backlog)."""
    envs = _envelopes()
    whole = UIMessageStreamEncoder().frames(envs)
    one_by_one = UIMessageStreamEncoder()
    assert b"".join(one_by_one.frames([env]) for env in envs) == whole
    pairs = UIMessageStreamEncoder()
    assert b"".join(pairs.frames(envs[i : i + 2]) for i in range(0, len(envs), 2)) == whole


def test_events_become_chunks_in_steps() -> None:
    chunks = _chunks(UIMessageStreamEncoder().frames(_envelopes()))
    assert [c["type"] for c in chunks] == [
        "start",
        "message-metadata",
        "start-step",
        "source-document",
        "source-url",
        "text-start",
        "text-delta",
        "text-end",
        "tool-input-start",
        "tool-input-delta",
        "tool-input-available",
        "tool-output-available",
        "finish-step",
        "start-step",
        "text-start",
        "text-delta",
        "text-delta",
        "text-end",
        "finish-step",
        "message-metadata",
        "finish",
    ]
    assert chunks[0] == {"type": "start", "messageId": "m1"}
    assert chunks[3]["sourceId"] == "d1" and chunks[3]["mediaType"] == "text/plain"
    assert chunks[4]["url"] == "https://example.org/a"
    assert chunks[6] == {"type": "text-delta", "id": "text-1", "delta": 'Let me "check"\n'}
    assert chunks[9]["inputTextDelta"] == '{"expression":"2+2"}'
    assert chunks[11]["output"] == {"value": 4}
    assert [c["delta"] for c in chunks[15:17]] == ["서울은 ", "4 </script>"]
    assert chunks[15]["id"] == "text-2"
    assert chunks[-1] == {"type": "finish", "finishReason": "stop"}


def test_a_token_line_is_the_chunk_orjson_would_write() -> None:
    encoder = UIMessageStreamEncoder()
    encoder.frames([envelope(1, token_event("a", 0))])  # opens the text part
    for text in ["", '\u2028 \\ "q" \x00', "한국어 🙂", "</script>", ',"index":3}']:
        line = encoder.frames([envelope(2, token_event(text, 1))])
        expected = {"type": "text-delta", "id": "text-1", "delta": text}
        assert line == b"data: " + orjson.dumps(expected) + b"\n\n"


def test_a_failure_before_the_metadata_still_starts_and_ends_the_message() -> None:
    error = ErrorEvent(code="BACKEND_UNAVAILABLE", message="down", retryable=True)
    chunks = _chunks(UIMessageStreamEncoder().frames([envelope(1, error)]))
    assert [c["type"] for c in chunks] == ["start", "message-metadata", "error", "finish"]
    assert chunks[1]["messageMetadata"]["error"]["retryable"] is True


def test_a_cancel_is_an_abort() -> None:
    envs = [*_envelopes()[:3], envelope(4, ErrorEvent(code="CANCELLED", message="stopped"))]
    chunks = _chunks(UIMessageStreamEncoder().frames(envs))
    assert [c["type"] for c in chunks][-4:] == ["text-end", "finish-step", "abort", "finish"]
    assert chunks[-2] == {"type": "abort", "reason": "stopped"}


def test_finish_reasons() -> None:
    assert finish_reason("tool_calls") == "tool-calls"
    assert finish_reason("content_filter") == "content-filter"
    assert finish_reason("max_tool_rounds") == "other"
    assert finish_reason(None) == "stop"
