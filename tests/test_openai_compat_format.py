"""Pure parts of the OpenAI format: chunk translation, accumulation (model resolution:
test_openai_models.py)."""

from __future__ import annotations

import orjson
import pytest

from tokenrelay.errors import ValidationError
from tokenrelay.events import Envelope
from tokenrelay.server.openai_format import (
    DONE_FRAME,
    ChunkTranslator,
    CompletionAccumulator,
    MessageIn,
    error_body,
    finish_reason_of,
    sse_data,
    to_chat_messages,
    to_tool_choice,
)


def test_translator_sequence() -> None:
    t = ChunkTranslator("s1", 100, "asked", include_usage=True)
    chunks = [
        *t.translate("metadata", {"model": "m1"}),
        *t.translate("sources", {"documents": []}),
        *t.translate("token", {"content": "hi", "index": 0}),
        *t.translate("tool_call", {"call_id": "c", "tool": "f", "args": {"a": 1}}),
        *t.translate("done", {"finish_reason": "tool_calls", "usage": {"prompt_tokens": 2}}),
    ]
    assert [c["choices"][0]["delta"] if c["choices"] else None for c in chunks] == [
        {"role": "assistant", "content": ""},
        {"content": "hi"},
        {
            "tool_calls": [
                {
                    "index": 0,
                    "id": "c",
                    "type": "function",
                    "function": {"name": "f", "arguments": '{"a":1}'},
                }
            ]
        },
        {},
        None,
    ]
    assert {c["id"] for c in chunks} == {"chatcmpl-s1"} and {c["model"] for c in chunks} == {"m1"}
    assert chunks[3]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["usage"] == {"prompt_tokens": 2, "completion_tokens": 0, "total_tokens": 2}


def envelopes(*events: tuple[str, dict[str, object]]) -> list[Envelope]:
    return [
        Envelope(seq, kind, orjson.dumps({"type": kind, **data}).decode())
        for seq, (kind, data) in enumerate(events, start=1)
    ]


@pytest.mark.parametrize("include_usage", [False, True])
def test_frames_are_the_translated_chunks_byte_for_byte(include_usage: bool) -> None:
    """The token template gives what `sse_data` of the translated chunk gives, also after the
    model changed, with Korean, quotes and newlines in the text; `[DONE]` follows `done`."""
    events = envelopes(
        ("metadata", {"model": "m1"}),
        ("sources", {"documents": []}),
        ("token", {"content": "안녕", "index": 0}),
        ("token", {"content": 'say "hi"\n', "index": 1}),
        ("metadata", {"model": "m2"}),
        ("token", {"content": "", "index": 2}),
        ("done", {"finish_reason": "stop", "usage": {"prompt_tokens": 3}}),
    )
    reference = ChunkTranslator("s1", 100, "asked", include_usage=include_usage)
    expected = b"".join(
        sse_data(chunk)
        for env in events
        for chunk in reference.translate(env.type, orjson.loads(env.data))
    )
    framer = ChunkTranslator("s1", 100, "asked", include_usage=include_usage)
    # one batch at a time, as pushes give them, and all at once, as a waking reader takes them
    one_by_one = b"".join(framer.frames([env]) for env in events)
    at_once = ChunkTranslator("s1", 100, "asked", include_usage=include_usage).frames(events)
    assert one_by_one == at_once == expected + DONE_FRAME
    assert "안녕".encode() in one_by_one  # not \uXXXX escapes


def test_frames_of_an_error_end_the_stream_in_openais_shape() -> None:
    events = envelopes(
        ("metadata", {"model": "m"}),
        ("error", {"code": "PROVIDER_ERROR", "message": "boom", "suggestion": "retry"}),
    )
    body = ChunkTranslator("s1", 100, "m").frames(events)
    frames = body.split(b"\n\n")
    assert frames[-2:] == [b"data: [DONE]", b""]
    error = orjson.loads(frames[-3].removeprefix(b"data: "))["error"]
    assert error["code"] == "PROVIDER_ERROR" and error["message"] == "boom"


def test_frames_of_events_without_a_counterpart_are_empty() -> None:
    framer = ChunkTranslator("s1", 100, "m")
    framer.frames(envelopes(("metadata", {"model": "m"})))
    assert framer.frames(envelopes(("status", {"message": "searching"}))) == b""


def test_accumulator_tool_calls_leave_content_null() -> None:
    acc = CompletionAccumulator("s", 1, "m")
    acc.add("tool_call", {"call_id": "c", "tool": "f", "args": {}})
    acc.add("done", {"finish_reason": "tool_calls"})
    message = acc.response()["choices"][0]["message"]
    assert message["content"] is None
    assert message["tool_calls"] == [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    ]


def test_messages_mapping_and_its_errors() -> None:
    msgs = [
        MessageIn(role="developer", content="sys"),
        MessageIn.model_validate(
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ],
            }
        ),
        MessageIn(role="tool", content="42", tool_call_id="c1"),
    ]
    mapped = to_chat_messages(msgs)
    assert [m.role for m in mapped] == ["system", "assistant", "tool"]
    assert mapped[1].tool_calls[0].name == "f" and mapped[1].content == ""
    bad_args = MessageIn.model_validate(
        {
            "role": "assistant",
            "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "[1]"}}],
        }
    )
    with pytest.raises(ValidationError) as caught:
        to_chat_messages([bad_args])
    assert caught.value.details == {"param": "messages.0.tool_calls.0"}


def test_tool_choice_and_finish_reason() -> None:
    assert to_tool_choice({"type": "function", "function": {"name": "f"}}) == "f"
    assert to_tool_choice("required") == "required"
    with pytest.raises(ValidationError):
        to_tool_choice("sometimes")
    assert finish_reason_of("cancelled") == "stop" and finish_reason_of("length") == "length"
    assert error_body("TIMEOUT", "slow")["error"]["type"] == "server_error"
