"""Errors over HTTP in the client's language: before the stream (Accept-Language, then
options.locale over it), in the stream, and the OpenAI API in English whatever is asked."""

from __future__ import annotations

import re

import httpx

from tests.helpers import chat_stream

HANGUL = re.compile(r"[가-힣]")
KO = {"Accept-Language": "ko-KR,ko;q=0.9,en;q=0.5"}


async def test_a_validation_error_in_korean_by_accept_language(live_server) -> None:
    async with live_server() as srv, httpx.AsyncClient(base_url=srv.url) as client:
        ko = await client.post("/api/chat/stream", json={"message": " "}, headers=KO)
        en = await client.post("/api/chat/stream", json={"message": " "})
    assert ko.status_code == en.status_code == 422
    assert ko.json()["code"] == en.json()["code"] == "VALIDATION_ERROR"
    assert ko.json()["message"] == "메시지가 비어 있습니다"
    assert ko.json()["suggestion"] == "보이는 글자가 하나 이상 있는 메시지를 보내 주세요"
    assert en.json()["message"] == "message is empty"


async def test_options_locale_wins_over_the_header(live_server) -> None:
    async with live_server() as srv, httpx.AsyncClient(base_url=srv.url) as client:
        ko = await client.post(
            "/api/chat/stream",
            json={"message": " ", "options": {"locale": "ko"}},
            headers={"Accept-Language": "en"},
        )
        en = await client.post(
            "/api/chat/stream", json={"message": " ", "options": {"locale": "en"}}, headers=KO
        )
    assert ko.json()["message"] == "메시지가 비어 있습니다"
    assert en.json()["message"] == "message is empty"


async def test_the_setting_is_the_default(live_server) -> None:
    async with live_server(locale="ko") as srv, httpx.AsyncClient(base_url=srv.url) as client:
        missing = await client.get("/api/sessions/nope")
        english = await client.get("/api/sessions/nope", headers={"Accept-Language": "en"})
    assert missing.status_code == 404 and missing.json()["code"] == "SESSION_NOT_FOUND"
    assert missing.json()["message"] == "세션 'nope'이(가) 없습니다"
    assert english.json()["message"] == "no session 'nope'"


async def test_a_pydantic_error_is_said_in_korean(live_server) -> None:
    async with live_server() as srv, httpx.AsyncClient(base_url=srv.url) as client:
        response = await client.post("/api/chat/stream", json={"mesage": "hi"}, headers=KO)
    assert response.status_code == 422
    assert HANGUL.search(response.json()["message"])
    assert HANGUL.search(response.json()["suggestion"])


async def test_an_error_in_the_stream_in_korean(live_server) -> None:
    body = {
        "message": "q",
        "options": {
            "locale": "ko",
            "scripted": {"reply": "a b c", "error_after": 1, "error_code": "PROVIDER_ERROR"},
        },
    }
    async with live_server() as srv:
        result = await chat_stream(srv.url, body)
    assert result.types == ["metadata", "token", "error"]
    error = result.last()
    assert error["code"] == "PROVIDER_ERROR"
    assert error["message"] == "스크립트대로 1조각 뒤에 실패했습니다"
    assert HANGUL.search(error["suggestion"])


async def test_a_cancelled_stream_in_korean(live_server) -> None:
    body = {"message": "q", "options": {"scripted": {"reply": "a " * 400, "delay_ms": 20}}}
    async with (
        live_server() as srv,
        httpx.AsyncClient(base_url=srv.url, timeout=30) as client,
        client.stream("POST", "/api/chat/stream", json=body, headers=KO) as response,
    ):
        text = ""
        cancelled = False
        async for chunk in response.aiter_text():
            text += chunk
            if "event: token" in text and not cancelled:
                found = re.search(r'"stream_id":\s*"([^"]+)"', text)
                assert found is not None
                await client.post(f"/api/streams/{found.group(1)}/cancel")
                cancelled = True
    assert '"code":"CANCELLED"' in text.replace(" ", "")
    assert "스트림이 취소되었습니다" in text


async def test_the_openai_api_stays_english(live_server) -> None:
    async with live_server() as srv, httpx.AsyncClient(base_url=srv.url) as client:
        response = await client.post(
            "/v1/chat/completions", json={"model": "nope", "messages": []}, headers=KO
        )
    assert response.status_code >= 400
    assert not HANGUL.search(response.text)
