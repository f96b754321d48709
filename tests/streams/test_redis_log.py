"""The shared stream log on a real Redis: two log instances stand in for two replicas."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.helpers import done_event
from tokenrelay.errors import BackendUnavailable
from tokenrelay.events import ErrorEvent, TokenEvent
from tokenrelay.streams.redis import RedisStreamLog


async def _pair(redis_settings: dict[str, Any]) -> tuple[RedisStreamLog, RedisStreamLog]:
    a = await RedisStreamLog.connect(
        redis_settings["redis_url"], prefix=redis_settings["redis_prefix"], ttl_s=30
    )
    b = await RedisStreamLog.connect(
        redis_settings["redis_url"], prefix=redis_settings["redis_prefix"], ttl_s=30
    )
    return a, b


async def test_another_replica_replays_and_follows_live(redis_settings) -> None:
    a, b = await _pair(redis_settings)
    try:
        await a.create("s1", owner="k1", session_id="sess")
        for i in range(3):
            a.emit("s1", TokenEvent(content=f"t{i} ", index=i))
        await a.flush()
        info = await b.info("s1")
        assert info is not None and info.owner == "k1" and info.session_id == "sess"
        assert info.last_seq == 3 and not info.finished

        seen: list[tuple[int, str]] = []

        async def follow() -> None:
            async for env in b.read("s1", after_seq=1):
                seen.append((env.seq, env.type))

        reader = asyncio.create_task(follow())
        await asyncio.sleep(0.1)
        a.emit("s1", TokenEvent(content="t3", index=3))
        a.emit("s1", done_event(3))
        await asyncio.wait_for(reader, 10)
        assert seen == [(2, "token"), (3, "token"), (4, "token"), (5, "done")]
        info = await b.info("s1")
        assert info is not None and info.finished
        assert not a._local.is_local("s9") and a._local.is_local("s1")
        assert not b._local.is_local("s1")
    finally:
        await a.aclose()
        await b.aclose()


async def test_unknown_stream_has_no_info(redis_settings) -> None:
    a, _ = await _pair(redis_settings)
    try:
        assert await a.info("nope") is None
    finally:
        await a.aclose()
        await _.aclose()


async def test_cancel_request_reaches_the_generating_replica(redis_settings) -> None:
    a, b = await _pair(redis_settings)
    asked: list[str] = []
    got = asyncio.Event()

    async def on_cancel(stream_id: str) -> None:
        asked.append(stream_id)
        got.set()

    try:
        await a.create("s2", owner=None, session_id=None)
        a.on_cancel_request(on_cancel)
        await asyncio.sleep(0.2)  # the subscription is up
        assert await b.request_cancel("s2")
        await asyncio.wait_for(got.wait(), 5)
        assert asked == ["s2"]
    finally:
        await a.aclose()
        await b.aclose()


async def test_remote_reader_holds_a_lease(redis_settings) -> None:
    a, b = await _pair(redis_settings)
    try:
        await a.create("s3", owner=None, session_id=None)
        a.emit("s3", TokenEvent(content="x", index=0))
        await a.flush()
        assert not await a.has_remote_readers("s3")
        reader = asyncio.create_task(anext(b.read("s3")))
        await asyncio.wait_for(reader, 5)
        assert await a.has_remote_readers("s3")
    finally:
        await a.aclose()
        await b.aclose()


async def test_vanished_writer_ends_remote_reads_with_a_retryable_error(redis_settings) -> None:
    a, b = await _pair(redis_settings)
    try:
        await a.create("s4", owner=None, session_id=None)
        a.emit("s4", TokenEvent(content="x", index=0))
        await a.flush()
        await a._redis.delete(a._k("alive", "s4"))  # the writer's process died
        events = [env async for env in b.read("s4")]
        assert [(e.seq, e.type) for e in events] == [(1, "token"), (2, "error")]
        error = ErrorEvent.model_validate_json(events[-1].data)
        assert error.code == "BACKEND_UNAVAILABLE" and error.retryable
    finally:
        await a.aclose()
        await b.aclose()


async def test_a_reader_ends_a_stream_in_the_streams_language(redis_settings) -> None:
    """The error a reader writes itself (the owner gone) is in the language of the request
    that started the stream, which the log keeps, not in the reading request's."""
    from tokenrelay.i18n import set_locale
    from tokenrelay.server.resume import in_the_streams_language

    a, b = await _pair(redis_settings)
    try:
        await a.create("s6", owner=None, session_id=None, locale="ko")
        a.emit("s6", TokenEvent(content="x", index=0))
        await a.flush()
        await a._redis.delete(a._k("alive", "s6"))  # the writer's process died
        info = await b.info("s6")
        assert info is not None and info.locale == "ko"

        async def resume_in_english() -> list[Any]:
            set_locale("en")  # the reading request's Accept-Language
            in_the_streams_language(info)  # what the resume route does
            return [env async for env in b.read("s6")]

        events = await asyncio.create_task(resume_in_english())  # its own copy of the context
        error = ErrorEvent.model_validate_json(events[-1].data)
        assert error.code == "BACKEND_UNAVAILABLE"
        assert error.message == "답변을 만들던 서버가 답변을 끝내기 전에 멈췄습니다", error
    finally:
        await a.aclose()
        await b.aclose()


async def test_unreachable_redis_is_a_clear_backend_error() -> None:
    with pytest.raises(BackendUnavailable) as info:
        await RedisStreamLog.connect("redis://127.0.0.1:1/0")
    assert "TOKENRELAY_REDIS_URL" in info.value.details["operator"]
    assert "TOKENRELAY" not in info.value.suggestion
