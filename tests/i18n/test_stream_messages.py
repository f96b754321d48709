"""The stream runner's and the idle watchdog's messages, made where they happen, in the
language of the request that started the stream: `options.locale` over an English
Accept-Language, also when the stream is cancelled by a request in another language."""

from __future__ import annotations

import re
from typing import Any

import httpx

from tests.helpers import chat_stream, parse_frames

HANGUL = re.compile(r"[가-힣]")
EN = {"Accept-Language": "en"}


def korean(scripted: dict[str, Any]) -> dict[str, Any]:
    return {"message": "q", "options": {"locale": "ko", "scripted": scripted}}


async def test_the_deadline_in_the_streams_language(live_server: Any) -> None:
    async with live_server(stream_deadline_s=0.5) as srv:
        result = await chat_stream(srv.url, korean({"tokens": 100, "delay_ms": 50}), headers=EN)
    error = result.last()
    assert error["code"] == "TIMEOUT"
    assert error["message"] == "답변이 제한 시간 0.5초를 넘겼습니다"
    assert HANGUL.search(error["suggestion"])
    assert "TOKENRELAY_STREAM_DEADLINE_S" in str(error["details"])  # the operator's, apart


async def test_the_idle_timeout_in_the_streams_language(live_server: Any) -> None:
    async with live_server(idle_timeout_s=0.5) as srv:
        result = await chat_stream(
            srv.url, korean({"reply": "a b c d", "stall_after": 2}), headers=EN
        )
    error = result.last()
    assert error["code"] == "TIMEOUT"
    assert HANGUL.search(error["message"]) and "0.5" in error["message"]
    assert HANGUL.search(error["suggestion"])
    assert "TOKENRELAY" not in error["message"] + error["suggestion"]


async def test_a_cancel_asked_in_english_ends_a_korean_stream_in_korean(live_server: Any) -> None:
    body = korean({"reply": "a " * 400, "delay_ms": 20})
    async with (
        live_server() as srv,
        httpx.AsyncClient(base_url=srv.url, timeout=30, headers=EN) as client,
        client.stream("POST", "/api/chat/stream", json=body) as response,
    ):
        text = ""
        cancelled = False
        async for chunk in response.aiter_text():
            text += chunk
            found = re.search(r'"stream_id":\s*"([^"]+)"', text)
            if found is not None and "event: token" in text and not cancelled:
                cancel = await client.post(f"/api/streams/{found.group(1)}/cancel")
                assert cancel.status_code < 300
                cancelled = True
    error = [f.json for f in parse_frames(text) if f.type == "error"][-1]
    assert error["code"] == "CANCELLED"
    assert error["message"] == "스트림이 취소되었습니다"
    assert HANGUL.search(error["suggestion"])
