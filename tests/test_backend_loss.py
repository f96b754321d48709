"""Losing Redis or PostgreSQL: clear errors, no hung stream, and recovery when they return."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.helpers import chat_stream
from tests.tcp_proxy import TcpProxy


def _via(url: str, proxy: TcpProxy) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.replace(f"{parts.hostname}:{parts.port}", f"127.0.0.1:{proxy.port}")
    return parts._replace(netloc=netloc).geturl()


async def _proxy_for(url: str) -> TcpProxy:
    parts = urlsplit(url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 0)
    await proxy.start()
    return proxy


@pytest.fixture
async def proxied(
    redis_settings: dict[str, Any], postgres_settings: dict[str, Any]
) -> AsyncIterator[tuple[dict[str, Any], TcpProxy, TcpProxy]]:
    redis_proxy = await _proxy_for(redis_settings["redis_url"])
    pg_proxy = await _proxy_for(postgres_settings["database_url"])
    settings = {
        **redis_settings,
        **postgres_settings,
        "redis_url": _via(redis_settings["redis_url"], redis_proxy),
        "database_url": _via(postgres_settings["database_url"], pg_proxy),
    }
    yield settings, redis_proxy, pg_proxy
    await redis_proxy.cut()
    await pg_proxy.cut()


async def test_losing_postgres_gives_clear_errors_then_recovers(live_server, proxied) -> None:
    settings, _, pg = proxied
    async with live_server(**settings) as srv, httpx.AsyncClient(base_url=srv.url) as client:
        first = await chat_stream(srv.url, {"message": "before"})
        session_id = first.last()["session_id"]
        await pg.cut()
        fresh = await chat_stream(srv.url, {"message": "new session while down"})
        existing = await client.post(
            "/api/chat/stream", json={"message": "again", "session_id": session_id}
        )
        history = await client.get(f"/api/sessions/{session_id}")
        await pg.restore()
        after = await chat_stream(srv.url, {"message": "after", "session_id": session_id})
    assert fresh.types[-1] == "error"  # the stream had started: a terminal event, not a hang
    assert fresh.last()["code"] == "BACKEND_UNAVAILABLE" and fresh.last()["retryable"]
    for response in (existing, history):
        assert response.status_code == 503
        assert response.json()["code"] == "BACKEND_UNAVAILABLE"
        assert "Retry" in response.json()["suggestion"] or response.json()["retryable"]
    assert after.types[-1] == "done"
    assert after.last()["history_length"] == 4


async def test_losing_redis_refuses_new_streams_then_recovers(live_server, proxied) -> None:
    settings, redis, _ = proxied
    async with live_server(**settings) as srv, httpx.AsyncClient(base_url=srv.url) as client:
        ok = await chat_stream(srv.url, {"message": "before"})
        await redis.cut()
        refused = await client.post("/api/chat/stream", json={"message": "while down"})
        await redis.restore()
        after = await chat_stream(srv.url, {"message": "after"})
    assert ok.types[-1] == "done"
    assert refused.status_code == 503
    assert refused.json()["code"] == "BACKEND_UNAVAILABLE"
    assert refused.json()["retryable"] is True
    assert after.types[-1] == "done"


async def test_redis_lost_mid_stream_the_local_reader_still_gets_the_end(
    live_server, proxied
) -> None:
    settings, redis, _ = proxied
    body = {"message": "q", "options": {"scripted": {"tokens": 40, "delay_ms": 10}}}
    async with (
        live_server(**settings) as srv,
        httpx.AsyncClient(base_url=srv.url, timeout=30) as client,
    ):
        raw = ""
        async with client.stream("POST", "/api/chat/stream", json=body) as response:
            async for chunk in response.aiter_text():
                raw += chunk
                if raw.count("event: token") == 5:
                    await redis.cut()
        await redis.restore()
    assert raw.count("event: token") == 40
    assert "event: done" in raw
