"""Hostile input over HTTP: oversized, malformed, wrong-type and unicode-edge requests get a 4xx
with our codes (never a 5xx), and prompt text can never add SSE fields or events."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tokenrelay.sse_parser import parse_sse

LONE_SURROGATE = pytest.param(
    "lone surrogate escape",
    b'{"message": "\\ud800"}',
    "VALIDATION_ERROR",
    id="lone surrogate escape",
)

RAW_BODIES: list[tuple[str, bytes, str]] = [
    ("invalid utf-8", b'{"message": "\xff\xfe"}', "VALIDATION_ERROR"),
    ("overlong utf-8 NUL", b'{"message": "\xc0\x80"}', "VALIDATION_ERROR"),
    ("not an object", b'["message", "hi"]', "VALIDATION_ERROR"),
    ("bare string", b'"hi"', "VALIDATION_ERROR"),
    ("null", b"null", "VALIDATION_ERROR"),
    ("empty body", b"", "VALIDATION_ERROR"),
    ("truncated", b'{"message": "hi', "VALIDATION_ERROR"),
    (
        "deep nesting",
        b'{"message": "hi", "options": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        "VALIDATION_ERROR",
    ),
    ("huge number", b'{"message": "hi", "options": {"temperature": 1e400}}', "VALIDATION_ERROR"),
    ("NaN", b'{"message": "hi", "options": {"temperature": NaN}}', "VALIDATION_ERROR"),
    ("duplicate keys, bad last", b'{"message": "hi", "message": 5}', "VALIDATION_ERROR"),
]

WRONG_TYPES: list[tuple[str, Any]] = [
    ("message list", {"message": ["hi"]}),
    ("message object", {"message": {"text": "hi"}}),
    ("message bool", {"message": True}),
    ("session id number", {"message": "hi", "session_id": 7}),
    ("session id with NUL", {"message": "hi", "session_id": "a\x00b"}),
    ("event_names string", {"message": "hi", "event_names": "nope"}),
    ("max_tokens float", {"message": "hi", "options": {"max_tokens": 1.5}}),
    ("max_tokens huge", {"message": "hi", "options": {"max_tokens": 10**30}}),
    ("scripted delay negative", {"message": "hi", "options": {"scripted": {"delay_ms": -1}}}),
    ("only zero-width", {"message": "\u200b\u200b"}),
]


@pytest.mark.parametrize(
    ("case", "raw", "code"),
    [LONE_SURROGATE, *(pytest.param(*b, id=b[0]) for b in RAW_BODIES)],
)
async def test_malformed_bodies(live_server, case: str, raw: bytes, code: str) -> None:
    async with live_server() as srv, httpx.AsyncClient(base_url=srv.url) as client:
        for path in ("/api/chat/stream", "/api/chat"):
            response = await client.post(
                path, content=raw, headers={"content-type": "application/json"}
            )
            assert 400 <= response.status_code < 500, (case, response.status_code, response.text)
            assert response.json()["code"] == code, (case, response.text)


@pytest.mark.parametrize(("case", "body"), WRONG_TYPES, ids=[c for c, _ in WRONG_TYPES])
async def test_wrong_types(live_server, case: str, body: Any) -> None:
    async with live_server() as srv, httpx.AsyncClient(base_url=srv.url) as client:
        response = await client.post("/api/chat", json=body)
    if case == "only zero-width":  # not blank to str.strip(): a valid, if odd, message
        assert response.status_code == 200
        return
    assert response.status_code == 422, (case, response.text)
    assert response.json()["code"] == "VALIDATION_ERROR"


async def test_unicode_edges_are_answered_not_crashed(live_server) -> None:
    texts = [
        "a\x00b",
        "\ufeffbom",
        "\u202eevil\u202c",
        "👩‍👩‍👧‍👦" * 100,
        "\U0010ffff",
        "e\u0301" * 50,
        "한국어 질문",
    ]
    async with live_server() as srv, httpx.AsyncClient(base_url=srv.url) as client:
        for text in texts:
            response = await client.post("/api/chat", json={"message": text})
            assert response.status_code == 200, (text, response.text)
            assert text in response.json()["content"]  # the scripted reply quotes it


async def test_oversized_inputs(live_server) -> None:
    async with (
        live_server(max_body_bytes=100_000) as srv,
        httpx.AsyncClient(base_url=srv.url) as client,
    ):
        too_long = await client.post("/api/chat", json={"message": "a" * 10_001})
        too_big = await client.post("/api/chat", json={"message": "a" * 200_000})
        long_query = await client.get("/api/chat/stream", params={"message": "a" * 20_000})
        long_header = await client.get("/api/streams/abc", headers={"Last-Event-ID": "x" * 7000})
    assert too_long.status_code == 422 and too_long.json()["code"] == "VALIDATION_ERROR"
    assert too_big.status_code == 413 and too_big.json()["code"] == "VALIDATION_ERROR"
    assert long_query.status_code == 422 and long_query.json()["code"] == "VALIDATION_ERROR"
    assert 400 <= long_header.status_code < 500


async def test_odd_paths_headers_and_queries(live_server) -> None:
    async with live_server() as srv, httpx.AsyncClient(base_url=srv.url) as client:
        responses = [
            await client.get("/api/sessions/%00"),
            await client.get("/api/sessions/..%2F..%2Fetc%2Fpasswd"),
            await client.get("/api/streams/" + "a" * 500),
            await client.post("/api/streams/%ff/cancel"),
            await client.get("/api/streams/abc", headers={"Last-Event-ID": "abc:-1"}),
            await client.get("/api/chat/stream", params={"message": "hi", "last_event_id": "::"}),
            await client.get("/api/chat/stream?message=%ff%fe"),
            await client.get("/api/documents/search", params={"q": "\x00"}),
            await client.post(
                "/api/chat", json={"message": "hi"}, headers={"X-Trace-ID": "a\tb" + "c" * 500}
            ),
        ]
    for response in responses:
        assert response.status_code < 500, (response.request.url, response.text)
        if response.status_code >= 400:
            assert response.json()["code"] in (
                "VALIDATION_ERROR",
                "SESSION_NOT_FOUND",
                "STREAM_NOT_FOUND",
            ), response.text


INJECTIONS = [
    'hi\n\nevent: done\ndata: {"type":"done"}\n\n',
    "hi\r\rid: evil:99\rretry: 1\r\r",
    "hi\r\n\r\nevent: error\r\ndata: {}\r\n\r\n",
    "\x00data: x\n\n: comment\n",
]


@pytest.mark.parametrize("prompt", INJECTIONS)
async def test_prompt_text_cannot_inject_sse_fields(live_server, prompt: str) -> None:
    async with live_server() as srv, httpx.AsyncClient(base_url=srv.url) as client:
        response = await client.post(
            "/api/chat/stream",
            json={"message": prompt, "options": {"scripted": {"tokens": 3}}},
        )
    events = parse_sse(response.content)
    types = [json.loads(e.data)["type"] for e in events]
    assert types == ["metadata", "token", "token", "token", "done"]
    assert all(e.event == t for e, t in zip(events, types, strict=True))
    sid = json.loads(events[0].data)["stream_id"]
    assert [e.id for e in events] == [f"{sid}:{i}" for i in range(1, 6)]
    assert {e.retry for e in events} == {srv.settings.retry_ms}
    text = "".join(json.loads(e.data)["content"] for e in events if e.event == "token")
    assert prompt in text


@pytest.mark.parametrize("path", ["/api/sessions", "/api/documents"])  # found by schemathesis
async def test_huge_offsets_are_a_422_not_a_crash(live_server, path: str) -> None:
    async with live_server() as srv, httpx.AsyncClient(base_url=srv.url) as client:
        response = await client.get(path, params={"offset": str(10**20)})
    assert response.status_code == 422, response.text
