"""Hostile text through the SSE encoder and our own parser: whatever the text, it comes back
exactly, however the bytes are split, and it can never add an SSE field or event.

Lone surrogates (U+D800..U+DFFF alone) cannot be encoded in UTF-8, so they can never be on the
wire: JSON requests carrying them are refused with 422 (tests/security/test_hostile_input.py)
and our JSON encoder refuses them (tested below), so the text strategies here exclude them.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic_core import PydanticSerializationError

from tokenrelay.delivery.encoders import encode_frames, encode_sse
from tokenrelay.events import (
    Envelope,
    TokenEvent,
    envelope,
    parse_event,
    token_event,
)
from tokenrelay.sse_parser import SSEEvent, SSEParseError, SSEParser, parse_sse

# any code point but lone surrogates, with the dangerous ones made frequent
DANGEROUS = st.sampled_from(
    ["\n", "\r", "\r\n", "\x00", ":", "data: x", "\n\n", "\ufeff", "\u2028"]
)
TEXT = st.lists(
    st.one_of(st.text(alphabet=st.characters(exclude_categories=("Cs",))), DANGEROUS)
).map("".join)
STREAM_IDS = st.from_regex(r"[a-f0-9]{32}", fullmatch=True)


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for p in points:
        pieces.append(data[last:p])
        last = p
    pieces.append(data[last:])
    return pieces


def feed_all(pieces: list[bytes]) -> list[SSEEvent]:
    parser = SSEParser()
    events: list[SSEEvent] = []
    for piece in pieces:
        events += parser.feed(piece)
    return events + parser.close()


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    text=TEXT,
    stream_id=STREAM_IDS,
    seq=st.integers(1, 2**40),
    names=st.booleans(),
    retry=st.none() | st.integers(0, 10**6),
    cuts=st.lists(st.integers(0, 10**6), max_size=12),
)
def test_token_text_round_trips_through_encoder_and_parser(
    text: str, stream_id: str, seq: int, names: bool, retry: int | None, cuts: list[int]
) -> None:
    frame = encode_sse(
        stream_id,
        envelope(seq, TokenEvent(content=text, index=0)),
        event_names=names,
        retry_ms=retry,
    )
    events = feed_all(split_at(frame, cuts))
    assert len(events) == 1  # the text could not add or split an event
    event = events[0]
    assert event.id == f"{stream_id}:{seq}"
    assert event.event == ("token" if names else "message")
    assert event.retry == retry
    parsed = parse_event(event.data)
    assert isinstance(parsed, TokenEvent)
    assert parsed.content == text
    # exactly one line per field: nothing the text holds became a line of its own
    lines = frame.decode("utf-8").split("\n")
    assert lines[-2:] == ["", ""]
    assert not any("\r" in line for line in lines)
    assert len(lines) == 2 + 1 + names + (retry is not None) + 1


@given(texts=st.lists(TEXT, max_size=8), stream_id=STREAM_IDS, names=st.booleans())
def test_a_batch_of_frames_is_the_frames_one_by_one(
    texts: list[str], stream_id: str, names: bool
) -> None:
    envs = [envelope(i + 1, token_event(t, i)) for i, t in enumerate(texts)]
    one_by_one = b"".join(encode_sse(stream_id, e, event_names=names) for e in envs)
    assert encode_frames(stream_id, envs, event_names=names) == one_by_one


@settings(max_examples=200)
@given(texts=st.lists(TEXT, min_size=1, max_size=8), cuts=st.lists(st.integers(0, 10**6)))
def test_a_stream_of_frames_round_trips_in_order(texts: list[str], cuts: list[int]) -> None:
    body = b"".join(
        encode_sse("s1", envelope(i + 1, TokenEvent(content=t, index=i)))
        + (b": ping\n\n" if i % 2 else b"")
        for i, t in enumerate(texts)
    )
    events = feed_all(split_at(body, cuts))
    assert [json.loads(e.data)["content"] for e in events] == texts
    assert [e.id for e in events] == [f"s1:{i + 1}" for i in range(len(texts))]


@settings(max_examples=300)
@given(
    data_lines=st.lists(
        st.text(alphabet=st.characters(exclude_categories=("Cs",), exclude_characters="\r\n")),
        min_size=1,
        max_size=5,
    ),
    event=st.text(
        alphabet=st.characters(exclude_categories=("Cs",), exclude_characters="\r\n"), min_size=1
    ),
    ending=st.sampled_from(["\n", "\r", "\r\n"]),
    cuts=st.lists(st.integers(0, 10**6), max_size=8),
)
def test_parser_follows_the_spec_for_raw_fields(
    data_lines: list[str], event: str, ending: str, cuts: list[int]
) -> None:
    """Any line ending, multi-line data, values with colons and NUL; one space is dropped."""
    raw = f"event: {event}{ending}"
    raw += "".join(f"data: {line}{ending}" for line in data_lines) + ending
    events = feed_all(split_at(raw.encode("utf-8"), cuts))
    assert events == [SSEEvent(data="\n".join(data_lines), event=event)]


def test_very_long_lines_round_trip() -> None:
    text = "가나다\x00\r\n" * 200_000  # ~2.6 MB of JSON on one line
    frame = encode_sse("s", envelope(1, TokenEvent(content=text, index=0)))
    assert len(frame) > 2_000_000
    events = feed_all([frame[i : i + 4093] for i in range(0, len(frame), 4093)])
    assert json.loads(events[0].data)["content"] == text


def test_parser_refuses_lines_over_its_limit_with_the_fix() -> None:
    parser = SSEParser(max_line_chars=10)
    with pytest.raises(SSEParseError, match="max_line_chars"):
        parser.feed(b"data: " + b"x" * 20)


def test_spec_details() -> None:
    # BOM, comments, fields without a value, id with NUL ignored, bad retry ignored,
    # an event without data is not dispatched, and the last id persists
    raw = (
        "\ufeff: hello\n"
        "id: 7\nretry: 15x\nevent: a\n\n"  # no data: nothing, but the id is kept
        "data\n\n"  # a field with no colon: empty data line
        "id: 8\x00\ndata:x\nretry: 20\n\n"
        "data: unfinished"
    )
    events = parse_sse(raw.encode())
    assert events == [SSEEvent(data="", id="7"), SSEEvent(data="x", id="7", retry=20)]
    parser = SSEParser()
    parser.feed(b": c1\n\n: c2\n")
    assert parser.comments == 2


def test_cr_and_lf_split_across_chunks_make_one_line_end() -> None:
    assert feed_all([b"data: a\r", b"\n", b"\r", b"\ndata: b\n\n"]) == [
        SSEEvent(data="a"),
        SSEEvent(data="b"),
    ]


def test_invalid_utf8_becomes_replacement_characters() -> None:
    assert parse_sse(b"data: \xff\xfe\n\n") == [SSEEvent(data="\ufffd\ufffd")]
    # a character split between chunks is decoded whole
    snow = "☃".encode()
    assert feed_all([b"data: " + snow[:1], snow[1:] + b"\n\n"]) == [SSEEvent(data="☃")]


def test_lone_surrogates_never_reach_the_wire() -> None:
    with pytest.raises(PydanticSerializationError):
        envelope(1, TokenEvent(content="a\ud800b", index=0))


def test_wire_json_keeps_korean_as_is() -> None:
    frame = encode_sse(
        "s", Envelope(1, "token", TokenEvent(content="안녕", index=0).model_dump_json())
    )
    assert "안녕".encode() in frame
