"""Heartbeats, timeouts, failures, cancellation and coalescing, over real HTTP."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.helpers import chat_stream, parse_frames


async def _history(url: str, session_id: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=url) as client:
        messages: list[dict[str, Any]] = (await client.get(f"/api/sessions/{session_id}")).json()[
            "messages"
        ]
    return messages


async def _wait_for(predicate: Any, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


async def test_provider_error_mid_stream_keeps_the_partial_answer(live_server) -> None:
    async with live_server() as srv:
        result = await chat_stream(
            srv.url,
            {
                "message": "q",
                "options": {"scripted": {"reply": "one two three four five", "error_after": 3}},
            },
        )
        session_id = result.events[0].json["session_id"]
        history = await _history(srv.url, session_id)
    assert result.types == ["metadata", "token", "token", "token", "error"]
    error = result.last()
    assert error["code"] == "PROVIDER_ERROR"
    assert error["message"] and error["suggestion"]
    assert error["retryable"] is False
    assert history[-1]["role"] == "assistant"
    assert history[-1]["status"] == "failed"
    assert history[-1]["content"] == "one two three "


async def test_retryable_provider_error_says_so(live_server) -> None:
    async with live_server(stream_start_wait_s=0) as srv:  # in the stream, not as the status
        result = await chat_stream(
            srv.url,
            {
                "message": "q",
                "options": {"scripted": {"error_after": 0, "error_code": "PROVIDER_UNAVAILABLE"}},
            },
        )
    assert result.types == ["metadata", "error"]
    assert result.last()["code"] == "PROVIDER_UNAVAILABLE"
    assert result.last()["retryable"] is True


async def test_stall_gets_heartbeats_then_idle_timeout(live_server) -> None:
    async with live_server(heartbeat_s=0.1, idle_timeout_s=0.8) as srv:
        result = await chat_stream(
            srv.url,
            {"message": "q", "options": {"scripted": {"reply": "a b c d", "stall_after": 2}}},
        )
        session_id = result.events[0].json["session_id"]
        history = await _history(srv.url, session_id)
        stats = srv.app.state.services.providers.get("scripted").stats
    kinds = ["ping" if f.data is None else f.type for f in result.frames]
    assert kinds[:3] == ["metadata", "token", "token"] or "ping" in kinds[:3]
    after_tokens = kinds[kinds.index("token") + 2 :]
    assert after_tokens.count("ping") >= 2, kinds  # heartbeats while the model is silent
    assert kinds[-1] == "error"
    assert result.last()["code"] == "TIMEOUT"
    assert result.last()["retryable"] is True
    assert stats.cancelled == 1  # the stalled provider was told to stop
    assert history[-1]["status"] == "interrupted"
    assert history[-1]["content"] == "a b "


async def test_heartbeat_before_the_first_token(live_server) -> None:
    # the headers go out after the start wait (else the timeout, first, would be the status)
    async with live_server(heartbeat_s=0.1, idle_timeout_s=0.6, stream_start_wait_s=0.05) as srv:
        result = await chat_stream(
            srv.url, {"message": "q", "options": {"scripted": {"stall_after": 0}}}
        )
    kinds = ["ping" if f.data is None else f.type for f in result.frames]
    assert "token" not in kinds
    assert kinds.count("ping") >= 2
    assert all(f.comments == ["ping"] for f in result.frames if f.data is None)
    assert kinds[-1] == "error"


async def test_whole_stream_deadline(live_server) -> None:
    async with live_server(stream_deadline_s=0.5) as srv:
        result = await chat_stream(
            srv.url, {"message": "q", "options": {"scripted": {"tokens": 100, "delay_ms": 50}}}
        )
        session_id = result.events[0].json["session_id"]
        history = await _history(srv.url, session_id)
    assert result.types[-1] == "error"
    assert result.last()["code"] == "TIMEOUT"
    assert 0 < result.types.count("token") < 100
    assert history[-1]["status"] == "interrupted"
    assert history[-1]["content"] == result.text


async def test_disconnect_cancels_the_provider(live_server) -> None:
    async with live_server(disconnect_grace_s=0) as srv:  # the default grace is 60 s
        provider = srv.app.state.services.providers.get("scripted")
        body = {"message": "q", "options": {"scripted": {"tokens": 1000, "delay_ms": 10}}}
        seen = ""
        async with (
            httpx.AsyncClient(base_url=srv.url) as client,
            client.stream("POST", "/api/chat/stream", json=body) as response,
        ):
            async for chunk in response.aiter_text():
                seen += chunk
                if seen.count("event: token") >= 3:
                    break  # leaving the block closes the connection mid-answer
        await _wait_for(lambda: provider.stats.cancelled == 1)
        services = srv.app.state.services
        await _wait_for(lambda: services.runner.active == 0)
        session_id = parse_frames(seen)[0].json["session_id"]
        history = await _history(srv.url, session_id)
        metrics = (await httpx.AsyncClient(base_url=srv.url).get("/metrics")).text
    assert provider.stats.completed == 0
    assert history[-1]["status"] == "interrupted"
    assert 3 <= len(history[-1]["content"]) < 1000
    assert "tokenrelay_cancel_latency_seconds_count 1.0" in metrics
    assert "tokenrelay_disconnects_total 1.0" in metrics


async def test_disconnect_grace_lets_a_quick_reconnect_keep_the_stream(live_server) -> None:
    async with live_server(disconnect_grace_s=5) as srv:
        provider = srv.app.state.services.providers.get("scripted")
        body = {"message": "q", "options": {"scripted": {"tokens": 30, "delay_ms": 10}}}
        seen = ""
        async with (
            httpx.AsyncClient(base_url=srv.url) as client,
            client.stream("POST", "/api/chat/stream", json=body) as response,
        ):
            async for chunk in response.aiter_text():
                seen += chunk
                if seen.count("event: token") >= 2:
                    break
        frames = [f for f in parse_frames(seen) if f.data is not None]
        last_id = frames[-1].id
        stream_id = frames[0].json["stream_id"]
        async with httpx.AsyncClient(base_url=srv.url) as client:
            resumed = await client.get(
                f"/api/streams/{stream_id}", headers={"Last-Event-ID": last_id}
            )
    rest = [f for f in parse_frames(resumed.text) if f.data is not None]
    assert provider.stats.cancelled == 0
    assert rest[-1].type == "done"
    assert rest[0].id == f"{stream_id}:{int(last_id.rsplit(':', 1)[1]) + 1}"
    tokens = "".join(f.json["content"] for f in frames + rest if f.type == "token")
    assert len(tokens) == len(provider_reply_for("q", 30))


def provider_reply_for(question: str, tokens: int) -> str:
    from tokenrelay.providers.scripted import default_reply, split_pieces

    return "".join(split_pieces(default_reply(question), tokens))


async def test_explicit_cancel(live_server) -> None:
    async with live_server() as srv:
        provider = srv.app.state.services.providers.get("scripted")
        body = {"message": "q", "options": {"scripted": {"tokens": 1000, "delay_ms": 10}}}
        async with (
            httpx.AsyncClient(base_url=srv.url) as client,
            client.stream("POST", "/api/chat/stream", json=body) as response,
        ):
            seen = ""
            cancel = None
            async for chunk in response.aiter_text():
                seen += chunk
                if cancel is None and "event: token" in seen:
                    stream_id = parse_frames(seen)[0].json["stream_id"]
                    cancel = await client.post(f"/api/streams/{stream_id}/cancel")
                    assert cancel.json() == {
                        "stream_id": stream_id,
                        "cancelled": True,
                        "finished": False,
                    }
            frames = [f for f in parse_frames(seen) if f.data is not None]
    assert frames[-1].type == "error"
    assert frames[-1].json["code"] == "CANCELLED"
    assert provider.stats.cancelled == 1


async def test_coalescing_merges_pieces_and_keeps_every_character(live_server) -> None:
    reply = "토큰을 합쳐도 글자는 하나도 잃지 않습니다. Every character arrives, even the tail!"
    async with live_server(coalesce_ms=40) as srv:
        result = await chat_stream(
            srv.url,
            {
                "message": "q",
                "options": {"scripted": {"reply": reply, "tokens": 60, "delay_ms": 2}},
            },
        )
    assert result.text == reply
    assert 1 <= result.types.count("token") < 60
    assert result.last()["total_chunks"] == result.types.count("token")


async def test_coalescing_flushes_the_tail_while_the_model_is_silent(live_server) -> None:
    async with live_server(coalesce_ms=30, idle_timeout_s=1.0) as srv:
        result = await chat_stream(
            srv.url,
            {
                "message": "q",
                "options": {
                    "scripted": {"reply": "끝까지 보냅니다", "tokens": 4, "stall_after": 4}
                },
            },
        )
    assert result.types[-1] == "error"  # the model stalled after its last piece
    assert result.text == "끝까지 보냅니다"  # ...but the buffered tail went out before that
