"""Limits: request rate (in process and Redis), running streams per client and per process,
body size. All before the stream starts, with our JSON shape and Retry-After."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request

from tests.security.conftest import ALICE, BOB, KEYS, STALL, open_stream
from tokenrelay.errors import TokenRelayError
from tokenrelay.limits.base import Bucket, LimitPolicy, take_token
from tokenrelay.limits.memory import MemoryLimiter
from tokenrelay.server.limits import LimitsState, limited_pipeline
from tokenrelay.streams.context import Pipeline, StreamContext

POLICY = LimitPolicy(rate_per_minute=60, burst=2, max_streams=2, stream_slot_ttl_s=60)


# -- the arithmetic


def test_token_bucket() -> None:
    bucket, first = take_token(None, 100.0, rate_per_s=1.0, burst=2)
    bucket, second = take_token(bucket, 100.0, 1.0, 2)
    bucket, third = take_token(bucket, 100.0, 1.0, 2)
    assert first.allowed and second.allowed and not third.allowed
    assert third.retry_after_s == pytest.approx(1.0)
    bucket, later = take_token(bucket, 100.5, 1.0, 2)
    assert not later.allowed and later.retry_after_s == pytest.approx(0.5)
    _, refilled = take_token(bucket, 101.0, 1.0, 2)
    assert refilled.allowed
    # a clock going backwards never adds tokens; the bucket never exceeds its size
    back, _ = take_token(Bucket(0.0, 200.0), 150.0, 1.0, 2)
    assert back.tokens == 0.0
    full, _ = take_token(Bucket(2.0, 0.0), 10_000.0, 1.0, 2)
    assert full.tokens == 1.0


# -- limiters: the same contract in process and in Redis


async def _contract(limiter: Any) -> None:
    assert (await limiter.hit("key:a")).allowed
    assert (await limiter.hit("key:a")).allowed
    refused = await limiter.hit("key:a")
    assert not refused.allowed and 0 < refused.retry_after_s <= 1.0
    assert (await limiter.hit("key:b")).allowed  # another client has its own bucket
    assert await limiter.acquire_stream("key:a", "s1")
    assert await limiter.acquire_stream("key:a", "s1")  # taking the same slot twice: one slot
    assert await limiter.acquire_stream("key:a", "s2")
    assert not await limiter.acquire_stream("key:a", "s3")
    assert await limiter.acquire_stream("key:b", "s3")
    await limiter.release_stream("key:a", "s1")
    await limiter.release_stream("key:a", "s1")  # idempotent
    assert await limiter.acquire_stream("key:a", "s4")
    assert not await limiter.acquire_stream("key:a", "s5")


async def test_memory_limiter_contract() -> None:
    await _contract(MemoryLimiter(POLICY))


@pytest.mark.redis
async def test_redis_limiter_contract(redis_settings: dict[str, Any]) -> None:
    from tokenrelay.limits.redis import RedisLimiter

    limiter = RedisLimiter.from_url(
        redis_settings["redis_url"], POLICY, prefix=redis_settings["redis_prefix"]
    )
    try:
        await _contract(limiter)
    finally:
        await limiter.aclose()


@pytest.mark.redis
async def test_redis_slots_of_a_crashed_replica_expire(redis_settings: dict[str, Any]) -> None:
    from tokenrelay.limits.redis import RedisLimiter

    policy = LimitPolicy(rate_per_minute=0, burst=1, max_streams=1, stream_slot_ttl_s=0.2)
    crashed = RedisLimiter.from_url(
        redis_settings["redis_url"], policy, prefix=redis_settings["redis_prefix"]
    )
    survivor = RedisLimiter.from_url(
        redis_settings["redis_url"], policy, prefix=redis_settings["redis_prefix"]
    )
    try:
        assert await crashed.acquire_stream("key:a", "lost")
        assert not await survivor.acquire_stream("key:a", "new")
        await crashed.aclose()  # it never releases
        while not await survivor.acquire_stream("key:a", "new"):
            await asyncio.sleep(0.05)
        assert await survivor.running("key:a") == 1
    finally:
        await survivor.aclose()


# -- the slot a stream holds


def _request(limiter: MemoryLimiter, owner: str = "alice") -> Request:
    app = Starlette()
    app.state.limits = LimitsState(limiter, retry_after_s=5)
    return Request({"type": "http", "app": app, "state": {"owner": owner}, "headers": []})


def _pipeline(fail: bool = False, hold: asyncio.Event | None = None) -> Pipeline:
    async def run(stream: StreamContext) -> str:
        stream.emit('{"type":"token","content":"a","index":0}')
        if fail:
            raise RuntimeError("boom")
        if hold is not None:
            await hold.wait()
        return "done"

    return run


async def test_a_stream_slot_is_released_however_the_stream_ends() -> None:
    limiter = MemoryLimiter(LimitPolicy(0, 1, max_streams=1, stream_slot_ttl_s=60))
    stream = StreamContext("s", 0.0, [].append)
    # done: the runner closes it once `done` is stored
    guarded = await limited_pipeline(_request(limiter), _pipeline())
    assert limiter.running("key:alice") == 1
    with pytest.raises(TokenRelayError) as info:
        await limited_pipeline(_request(limiter), _pipeline())
    assert info.value.code == "RATE_LIMIT" and info.value.retry_after_s == 5
    assert await guarded(stream) == "done"
    await guarded.aclose()  # type: ignore[attr-defined]
    assert limiter.running("key:alice") == 0
    # failed
    guarded = await limited_pipeline(_request(limiter), _pipeline(fail=True))
    with pytest.raises(RuntimeError):
        await guarded(stream)
    assert limiter.running("key:alice") == 0
    # never started: the route closes it
    guarded = await limited_pipeline(_request(limiter), _pipeline())
    await guarded.aclose()  # type: ignore[attr-defined]
    assert limiter.running("key:alice") == 0
    # cancelled half-way
    guarded = await limited_pipeline(_request(limiter), _pipeline(hold=asyncio.Event()))
    task = asyncio.ensure_future(guarded(stream))
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.wait([task])
    assert task.cancelled() and limiter.running("key:alice") == 0


async def test_no_wrapper_at_all_when_the_limit_is_off() -> None:
    limiter = MemoryLimiter(LimitPolicy(0, 1, max_streams=0, stream_slot_ttl_s=60))
    pipeline = _pipeline()
    assert await limited_pipeline(_request(limiter), pipeline) is pipeline


# -- over HTTP


async def _rate_limited(srv_url: str, headers: dict[str, str] | None = None) -> None:
    async with httpx.AsyncClient(base_url=srv_url) as client:
        ok = [await client.get("/api/sessions", headers=headers) for _ in range(2)]
        over = await client.get("/api/sessions", headers=headers)
        health = await client.get("/healthz")  # not counted
    assert [r.status_code for r in ok] == [200, 200]
    assert over.status_code == 429
    body = over.json()
    assert body["code"] == "RATE_LIMIT" and body["retryable"] is True
    assert int(over.headers["retry-after"]) >= 1
    assert health.status_code == 200


async def test_rate_limit_per_ip_without_keys(live_server) -> None:
    async with live_server(rate_limit_per_minute=1, rate_limit_burst=2) as srv:
        await _rate_limited(srv.url)


async def test_rate_limit_per_key(live_server) -> None:
    async with live_server(api_keys=KEYS, rate_limit_per_minute=1, rate_limit_burst=2) as srv:
        await _rate_limited(srv.url, ALICE)
        async with httpx.AsyncClient(base_url=srv.url) as client:
            assert (await client.get("/api/sessions", headers=BOB)).status_code == 200


@pytest.mark.redis
async def test_rate_limit_in_redis_is_shared_by_replicas(
    live_server, redis_settings: dict[str, Any]
) -> None:
    limits = {"rate_limit_per_minute": 1, "rate_limit_burst": 2, **redis_settings}
    async with (
        live_server(**limits) as one,
        live_server(**limits) as two,
        httpx.AsyncClient() as client,
    ):
        assert (await client.get(f"{one.url}/api/sessions")).status_code == 200
        assert (await client.get(f"{two.url}/api/sessions")).status_code == 200
        over = await client.get(f"{one.url}/api/sessions")
    assert over.status_code == 429 and over.json()["code"] == "RATE_LIMIT"
    assert "retry-after" in over.headers


async def test_open_streams_cap_gives_503_and_spares_running_streams(live_server) -> None:
    async with (
        live_server(max_open_streams=1, disconnect_grace_s=30) as srv,
        httpx.AsyncClient(base_url=srv.url, timeout=30) as client,
    ):
        running = await open_stream(client, {"message": "first", **STALL})
        busy = await client.post("/api/chat/stream", json={"message": "second"})
        busy_json = await client.post("/api/chat", json={"message": "second"})
        ready = (await client.get("/readyz")).json()
        # the running one is untouched: it can still be resumed and cancelled
        cancel = await client.post(f"/api/streams/{running['stream_id']}/cancel")
        after = await client.post("/api/chat", json={"message": "third"})
    for response in (busy, busy_json):
        assert response.status_code == 503, response.text
        assert response.json()["code"] == "BACKEND_UNAVAILABLE"
        assert response.json()["retryable"] is True
        assert response.headers["retry-after"] == "5"
    assert ready["active_streams"] == 1
    assert cancel.json()["cancelled"] is True
    assert after.status_code == 200


async def test_running_streams_per_key(live_server) -> None:
    async with (
        live_server(api_keys=KEYS, max_streams_per_client=1, disconnect_grace_s=30) as srv,
        httpx.AsyncClient(base_url=srv.url, timeout=30) as client,
    ):
        first = await open_stream(client, {"message": "one", **STALL}, ALICE)
        over = await client.post("/api/chat/stream", json={"message": "two"}, headers=ALICE)
        bob = await client.post("/api/chat", json={"message": "bob"}, headers=BOB)
        await client.post(f"/api/streams/{first['stream_id']}/cancel", headers=ALICE)
        again = await client.post("/api/chat", json={"message": "three"}, headers=ALICE)
    assert over.status_code == 429 and over.json()["code"] == "RATE_LIMIT"
    assert "retry-after" in over.headers
    assert bob.status_code == 200
    assert again.status_code == 200  # the cancelled stream gave its slot back


async def test_body_size_limit(live_server) -> None:
    big = {"message": "x", "options": {"scripted": {"reply": "y" * 5000}}}

    async def chunked() -> AsyncIterator[bytes]:
        yield b'{"message": "'
        for _ in range(10):
            yield b"z" * 500
        yield b'"}'

    async with (
        live_server(max_body_bytes=2000) as srv,
        httpx.AsyncClient(base_url=srv.url) as client,
    ):
        declared = await client.post("/api/chat", json=big)
        streamed = await client.post(
            "/api/chat", content=chunked(), headers={"content-type": "application/json"}
        )
        small = await client.post("/api/chat", json={"message": "ok"})
        # documents have their own, larger limit (rag_max_upload_bytes)
        doc = await client.post("/api/documents", json={"text": "w " * 2000, "title": "t"})
    for response in (declared, streamed):
        assert response.status_code == 413, response.text
        assert response.json()["code"] == "VALIDATION_ERROR"
        assert "TOKENRELAY_MAX_BODY_BYTES" in response.json()["details"]["operator"]
        assert "TOKENRELAY_" not in response.json()["suggestion"]
    assert small.status_code == 200
    assert doc.status_code == 201
