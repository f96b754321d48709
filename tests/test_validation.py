"""Bad input: a 422 (or 404) JSON error with a stable code, and nothing written."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

BAD_BODIES: list[tuple[str, Any]] = [
    ("empty message", {"message": ""}),
    ("blank message", {"message": "   \n\t"}),
    ("too long", {"message": "가" * 10_001}),
    ("missing message", {}),
    ("message not a string", {"message": 42}),
    ("unknown top-level field", {"message": "hi", "temprature": 0.2}),
    ("unknown option", {"message": "hi", "options": {"bogus": True}}),
    ("unknown scripted option", {"message": "hi", "options": {"scripted": {"nope": 1}}}),
    ("negative tokens", {"message": "hi", "options": {"scripted": {"tokens": -1}}}),
    ("temperature out of range", {"message": "hi", "options": {"temperature": 9}}),
    ("unknown provider", {"message": "hi", "options": {"provider": "gpt-17"}}),
    ("bad session id", {"message": "hi", "session_id": "../../etc/passwd"}),
    ("options not an object", {"message": "hi", "options": "fast"}),
]


@pytest.mark.parametrize(("case", "body"), BAD_BODIES, ids=[c for c, _ in BAD_BODIES])
async def test_bad_bodies_get_422_and_write_nothing(live_server, case: str, body: Any) -> None:
    async with live_server() as srv, httpx.AsyncClient(base_url=srv.url) as client:
        for path in ("/api/chat/stream", "/api/chat"):
            response = await client.post(path, json=body)
            assert response.status_code == 422, (case, response.text)
            error = response.json()
            assert error["code"] == "VALIDATION_ERROR"
            assert error["message"] and isinstance(error["suggestion"], str)
            assert error["retryable"] is False
        sessions = (await client.get("/api/sessions")).json()["sessions"]
    assert sessions == []


async def test_malformed_json(live_server) -> None:
    async with live_server() as srv, httpx.AsyncClient(base_url=srv.url) as client:
        response = await client.post(
            "/api/chat/stream",
            content=b'{"message": "hi",',
            headers={"content-type": "application/json"},
        )
    assert response.status_code == 422
    assert response.json()["code"] == "VALIDATION_ERROR"
    assert "JSON" in response.json()["message"]


async def test_message_limit_is_exactly_inclusive(live_server) -> None:
    async with live_server() as srv, httpx.AsyncClient(base_url=srv.url) as client:
        ok = await client.post("/api/chat", json={"message": "a" * 10_000})
        over = await client.post("/api/chat", json={"message": "a" * 10_001})
    assert ok.status_code == 200
    assert over.status_code == 422
    assert "10000" in over.json()["message"]


async def test_unknown_session_is_404_to_read_and_a_new_one_to_chat(live_server) -> None:
    """An unknown id is a client-chosen one: a chat turn makes it; reading it is 404."""
    async with live_server() as srv, httpx.AsyncClient(base_url=srv.url) as client:
        history = await client.get("/api/sessions/nope")
        delete = await client.delete("/api/sessions/nope")
        response = await client.post(
            "/api/chat/stream", json={"message": "hi", "session_id": "nope"}
        )
        get = await client.get("/api/chat/stream", params={"message": "hi", "session_id": "nope"})
        made = await client.get("/api/sessions/nope")
    for r in (history, delete):
        assert r.status_code == 404
        assert r.json()["code"] == "SESSION_NOT_FOUND"
    assert response.status_code == 200 and get.status_code == 200
    assert len(made.json()["messages"]) == 4


async def test_get_without_message_is_422(live_server) -> None:
    async with live_server() as srv, httpx.AsyncClient(base_url=srv.url) as client:
        response = await client.get("/api/chat/stream")
    assert response.status_code == 422
    assert response.json()["code"] == "VALIDATION_ERROR"
