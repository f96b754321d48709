"""Pure parts of the Responses format: the encoder's token frames, errors, input mapping."""

from __future__ import annotations

import orjson
import pytest

from tokenrelay.errors import ValidationError
from tokenrelay.events import Envelope, TokenEvent, token_json
from tokenrelay.providers.base import ChatMessage
from tokenrelay.server.responses_format import ResponseBuilder, ResponsesEncoder
from tokenrelay.server.responses_request import item_ref, stored_ref, to_chat_messages

META = {"model": "m", "session_id": "", "message_id": "x"}


def envelopes(*events: tuple[str, str]) -> list[Envelope]:
    return [Envelope(i + 1, kind, data) for i, (kind, data) in enumerate(events)]


def parsed(body: bytes) -> list[dict[str, object]]:
    frames = [f for f in body.decode().split("\n\n") if f]
    out = []
    for frame in frames:
        event_line, data_line = frame.split("\n")
        data = orjson.loads(data_line.removeprefix("data: "))
        assert event_line == f"event: {data['type']}"
        out.append(data)
    return out


def test_token_frames_are_the_events_the_builder_would_make() -> None:
    """The per-token template gives, field for field, the builder's own delta event."""
    encoder = ResponsesEncoder(ResponseBuilder("s1", 1, "asked"))
    body = encoder.frames(
        envelopes(
            ("metadata", orjson.dumps(META).decode()),
            ("token", token_json("안녕", 0)),
            ("token", token_json('say "hi"\n', 1)),
        )
    )
    events = parsed(body)
    assert [e["type"] for e in events][-2:] == ["response.output_text.delta"] * 2
    reference = ResponseBuilder("s1", 1, "asked")
    reference.start(META)
    expected = reference.text("안녕")[-1]
    assert {**expected, "sequence_number": 4} == events[-2]
    assert events[-1]["delta"] == 'say "hi"\n' and events[-1]["sequence_number"] == 5


def test_a_stream_that_fails_before_it_started_is_an_error_event() -> None:
    encoder = ResponsesEncoder(ResponseBuilder("s1", 1, "m"))
    error = {"code": "PROVIDER_AUTH", "message": "bad key", "suggestion": "fix it"}
    events = parsed(encoder.frames(envelopes(("error", orjson.dumps(error).decode()))))
    assert events == [
        {
            "type": "error",
            "code": "PROVIDER_AUTH",
            "message": "bad key",
            "param": None,
            "sequence_number": 0,
        }
    ]


def test_error_response_is_openais_status_and_envelope() -> None:
    encoder = ResponsesEncoder(ResponseBuilder("s1", 1, "m"))
    status, body = encoder.error_response(
        {"code": "VALIDATION_ERROR", "message": "bad", "details": {"param": "input"}}
    )
    error = orjson.loads(body)["error"]
    assert status == 400
    assert error["type"] == "invalid_request_error" and error["param"] == "input"
    status, body = encoder.error_response({"code": "CONTEXT_TOO_LONG", "message": "long"})
    assert status == 400


def test_input_items_become_messages() -> None:
    messages = to_chat_messages(
        [
            {"role": "developer", "content": "rules"},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "q"}]},
            {"role": "assistant", "content": [{"type": "output_text", "text": "let me see"}]},
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": '{"a": 1}'},
            {"type": "function_call_output", "call_id": "c1", "output": "42"},
            {"type": "reasoning", "id": "r", "summary": []},
        ],
        instructions="be brief",
    )
    assert [(m.role, m.content) for m in messages] == [
        ("system", "be brief"),
        ("system", "rules"),
        ("user", "q"),
        ("assistant", "let me see"),
        ("tool", "42"),
    ]
    assert messages[3].tool_calls[0].arguments == {"a": 1}
    assert messages[4] == ChatMessage("tool", "42", tool_call_id="c1")


@pytest.mark.parametrize(
    ("item", "param"),
    [
        ({"type": "input_image"}, "input.0.type"),
        ({"role": "user", "content": [{"type": "input_image"}]}, "input.0.content.0.type"),
        ({"type": "function_call", "call_id": "c", "name": "f", "arguments": "["}, None),
        ({"type": "item_reference", "id": "msg_nope_0"}, "input.0.id"),
    ],
)
def test_unsupported_input_names_its_place(item: dict[str, object], param: str | None) -> None:
    with pytest.raises(ValidationError) as caught:
        to_chat_messages([item])
    if param is not None:
        assert caught.value.details == {"param": param}


def test_ids_name_the_stored_response() -> None:
    session, message = "a" * 32, "b" * 32
    ref = stored_ref(f"resp_{session}{message}")
    assert ref is not None and (ref.session_id, ref.message_id) == (session, message)
    assert stored_ref("resp_" + "c" * 32) is None  # an unstored response
    assert item_ref(f"fc_{session}{message}_3") == (ref, 3)
    assert item_ref("fc_nope_1") is None


def test_token_json_of_either_encoding_is_sent_as_is_and_decoded_at_the_end() -> None:
    """Tokens as `events.token_json` makes them or as a `TokenEvent`'s dump (another writer
    of the log): the delta and the final text are the same."""
    encoder = ResponsesEncoder(ResponseBuilder("s1", 1, "m"))
    pieces = ["한국어 ", 'a "quote" ', "\\back\nslash"]
    body = encoder.frames(
        envelopes(
            ("metadata", orjson.dumps(META).decode()),
            ("token", token_json(pieces[0], 0)),
            ("token", TokenEvent(content=pieces[1], index=1).model_dump_json()),
            ("token", token_json(pieces[2], 2)),
            ("done", orjson.dumps({"finish_reason": "stop", "usage": {}}).decode()),
        )
    )
    events = parsed(body)
    deltas = [e["delta"] for e in events if e["type"] == "response.output_text.delta"]
    assert deltas == pieces
    done = next(e for e in events if e["type"] == "response.output_text.done")
    assert done["text"] == "".join(pieces)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
