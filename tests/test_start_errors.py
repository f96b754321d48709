"""An error known before a new stream's first event is the response's HTTP status.

The response waits up to `stream_start_wait_s` for the first event after `metadata`: an
`error` then is answered as the HTTP error of its code, with our JSON body (the OpenAI shape
on `/v1`), so that clients can branch on the status; anything else, or nothing by then, starts
the stream as before, and a later error is in the stream.
"""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from tests.helpers import chat_stream, parse_frames

FAIL_AT_ONCE = {"error_after": 0, "error_code": "PROVIDER_UNAVAILABLE"}


def _body(scripted: dict[str, Any]) -> dict[str, Any]:
    return {"message": "q", "options": {"scripted": scripted}}


async def test_an_error_before_the_first_token_is_the_http_status(live_server) -> None:
    async with live_server() as srv, httpx.AsyncClient(base_url=srv.url) as client:
        response = await client.post("/api/chat/stream", json=_body(FAIL_AT_ONCE))
        assert response.status_code == 503
        assert response.headers["content-type"] == "application/json"
        assert response.headers["x-trace-id"]
        error = response.json()
        assert error["type"] == "error"
        assert error["code"] == "PROVIDER_UNAVAILABLE"
        assert error["retryable"] is True
        assert error["message"] and error["suggestion"]
        stream_id = error["stream_id"]
        # the turn is kept as it went: the stream is readable, the session has the message
        replay = await client.get(f"/api/streams/{stream_id}")
        kinds = [f.type for f in parse_frames(replay.text) if f.data is not None]
        assert kinds == ["metadata", "error"]
        session_id = parse_frames(replay.text)[0].json["session_id"]
        messages = (await client.get(f"/api/sessions/{session_id}")).json()["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert messages[-1]["status"] == "failed"


async def test_an_error_after_the_first_token_stays_in_the_stream(live_server) -> None:
    async with live_server() as srv:
        result = await chat_stream(
            srv.url, _body({"reply": "a b c", "error_after": 1, "error_code": "PROVIDER_ERROR"})
        )
    assert result.types == ["metadata", "token", "error"]
    assert result.last()["code"] == "PROVIDER_ERROR"


async def test_without_the_wait_the_error_is_an_event(live_server) -> None:
    async with live_server(stream_start_wait_s=0) as srv:
        result = await chat_stream(srv.url, _body(FAIL_AT_ONCE))
    assert result.types == ["metadata", "error"]


async def test_a_model_slower_than_the_wait_still_gets_its_headers(live_server) -> None:
    """A silent model does not hold the response: past the wait, the stream starts with its
    `metadata` (the stream id a client needs to cancel or resume)."""
    body = _body({"reply": "a b", "stall_after": 0})
    async with (
        live_server(stream_start_wait_s=0.3) as srv,
        httpx.AsyncClient(base_url=srv.url) as client,
        client.stream("POST", "/api/chat/stream", json=body) as response,
    ):
        assert response.status_code == 200
        seen = ""
        async for chunk in response.aiter_text():
            seen += chunk
            if "\n\n" in seen:
                break
    (first,) = [f for f in parse_frames(seen) if f.data is not None][:1]
    assert first.type == "metadata"


async def test_openai_sdks_raise_the_class_of_the_status(live_server) -> None:
    async with live_server() as srv:
        client = openai.AsyncOpenAI(base_url=f"{srv.url}/v1", api_key="unused", max_retries=0)
        with pytest.raises(openai.InternalServerError) as caught:
            stream = await client.chat.completions.create(
                model="scripted",
                messages=[{"role": "user", "content": "x"}],
                stream=True,
                extra_body={"tokenrelay": {"scripted": FAIL_AT_ONCE}},
            )
            async for _ in stream:
                pass
        await client.close()
    assert caught.value.status_code == 503
    body = caught.value.body
    assert isinstance(body, dict)
    assert body["code"] == "PROVIDER_UNAVAILABLE"  # the SDK hands over the `error` object
