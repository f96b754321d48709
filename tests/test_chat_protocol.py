"""The wire protocol of the native chat endpoints (DESIGN.md §3), over real HTTP."""

from __future__ import annotations

import json

import httpx

from tests.helpers import chat_stream, stream


async def test_event_order_ids_and_headers(live_server) -> None:
    async with live_server() as srv:
        result = await chat_stream(srv.url, {"message": "hello there"})
    assert result.response.status_code == 200
    headers = result.response.headers
    assert headers["content-type"].startswith("text/event-stream")
    assert headers["cache-control"] == "no-cache"
    assert headers["x-accel-buffering"] == "no"
    assert len(headers["x-trace-id"]) >= 16

    events = result.events
    assert result.types[0] == "metadata"
    assert result.types[-1] == "done"
    assert result.types.count("done") + result.types.count("error") == 1
    assert set(result.types[1:-1]) == {"token"}

    meta = events[0].json
    stream_id = meta["stream_id"]
    assert meta["trace_id"] == headers["x-trace-id"]
    assert meta["provider"] == "scripted"
    assert [f.id for f in events] == [f"{stream_id}:{i}" for i in range(1, len(events) + 1)]
    assert all(f.event == f.type for f in events)
    assert events[0].retry == 3000
    assert all(f.retry is None for f in events[1:])
    tokens = [f.json for f in events if f.type == "token"]
    assert [t["index"] for t in tokens] == list(range(len(tokens)))
    assert result.text == "This is tokenrelay's scripted answer to: hello there"

    done = result.last()
    assert done["session_id"] == meta["session_id"]
    assert done["message_id"] == meta["message_id"]
    assert done["finish_reason"] == "stop"
    assert done["total_chunks"] == len(tokens)
    assert done["usage"] == {
        "prompt_tokens": done["usage"]["prompt_tokens"],
        "completion_tokens": len(tokens),
    }
    assert done["usage"]["prompt_tokens"] > 0
    assert done["ttft_s"] >= 0 and done["processing_time_s"] >= done["ttft_s"]
    assert done["history_length"] == 2


async def test_korean_round_trip_stays_korean_on_the_wire(live_server) -> None:
    reply = "경복궁은 서울 종로구에 있는 조선 왕조의 법궁입니다 🏯"
    async with live_server() as srv:
        result = await chat_stream(
            srv.url,
            {
                "message": "경복궁은 어디에 있나요?",
                "options": {"scripted": {"reply": reply, "tokens": 9}},
            },
        )
        session_id = result.events[0].json["session_id"]
        async with httpx.AsyncClient(base_url=srv.url) as client:
            history = (await client.get(f"/api/sessions/{session_id}")).json()
    assert result.text == reply
    for frame in result.events:
        if frame.type == "token":  # each piece travels as itself, not as \\uXXXX escapes
            assert f'"content":"{frame.json["content"]}"' in result.raw
    assert "\\u" not in result.raw
    assert [m["content"] for m in history["messages"]] == ["경복궁은 어디에 있나요?", reply]


async def test_event_names_false_leaves_out_event_lines(live_server) -> None:
    async with live_server() as srv:
        result = await chat_stream(srv.url, {"message": "hi", "event_names": False})
    assert "event:" not in result.raw
    assert result.types[0] == "metadata" and result.types[-1] == "done"


async def test_get_for_eventsource_matches_post(live_server) -> None:
    async with live_server() as srv:
        got = await stream(srv.url, "GET", "/api/chat/stream", params={"message": "서울 날씨"})
        posted = await chat_stream(srv.url, {"message": "서울 날씨"})
        unnamed = await stream(
            srv.url, "GET", "/api/chat/stream", params={"message": "x", "event_names": "false"}
        )
    assert got.response.status_code == 200
    assert got.types == posted.types
    assert got.text == posted.text
    assert "event:" not in unnamed.raw


async def test_non_streaming_json_is_the_same_answer(live_server) -> None:
    async with live_server() as srv:
        streamed = await chat_stream(srv.url, {"message": "parity check"})
        async with httpx.AsyncClient(base_url=srv.url) as client:
            response = await client.post("/api/chat", json={"message": "parity check"})
    body = response.json()
    assert response.status_code == 200
    assert response.headers["x-trace-id"] == body["trace_id"]
    done = streamed.last()
    assert body["content"] == streamed.text
    assert body["usage"] == done["usage"]
    assert body["finish_reason"] == done["finish_reason"]
    assert body["total_chunks"] == done["total_chunks"]
    assert body["history_length"] == 2
    for key in ("session_id", "message_id", "stream_id", "ttft_s", "processing_time_s"):
        assert key in body


async def test_trace_id_from_the_caller_is_kept(live_server) -> None:
    async with live_server() as srv:
        result = await chat_stream(srv.url, {"message": "hi"}, headers={"X-Trace-ID": "req-42.abc"})
    assert result.response.headers["x-trace-id"] == "req-42.abc"
    assert result.events[0].json["trace_id"] == "req-42.abc"


async def test_prompt_text_cannot_inject_sse_fields(live_server) -> None:
    nasty = 'a\n\nevent: done\ndata: {"type":"done"}\r\nid: x:99\r\rretry: 1\n'
    async with live_server() as srv:
        result = await chat_stream(
            srv.url, {"message": nasty, "options": {"scripted": {"reply": nasty, "tokens": 3}}}
        )
    assert result.types.count("done") == 1 and result.types[-1] == "done"
    assert result.text == nasty
    assert all(f.id and f.id.endswith(f":{i}") for i, f in enumerate(result.events, start=1))
    json.loads(result.events[1].data or "")
