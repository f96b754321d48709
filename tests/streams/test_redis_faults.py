"""The Redis stream log under faults (issue #19): two log instances in one process stand in for
two replicas. Faults that take Redis away use a redis-server of the test's own
(tests/own.py); the others use the shared Redis under the test's own prefix.

Each case checks what a reader gets: every event once, in order, then exactly one terminal
event, never a skipped seq.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
import redis.exceptions as redis_errors

from tests.helpers import done_event, parse_frames
from tests.redis_server import OwnRedis, own_redis
from tokenrelay.delivery.encoders import encode_frames, encode_sse
from tokenrelay.errors import StreamTimeout
from tokenrelay.events import (
    READER_SEQ,
    Envelope,
    ErrorEvent,
    TokenEvent,
    reader_error,
)
from tokenrelay.streams import redis_lua as lua
from tokenrelay.streams.log import PumpSubscription, read_subscription
from tokenrelay.streams.redis import RedisStreamLog

LEASE_S = 1.0


async def _log(url: str, prefix: str = "tokenrelay", **kwargs: Any) -> RedisStreamLog:
    kwargs.setdefault("lease_s", LEASE_S)
    return await RedisStreamLog.connect(url, prefix=prefix, ttl_s=30, **kwargs)


async def _until(check: Callable[[], Awaitable[bool]] | Callable[[], bool], within_s: float = 20):
    deadline = time.monotonic() + within_s
    while True:
        got = check()
        if not isinstance(got, bool):
            got = await got
        if got:
            return
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


class Follower:
    """A reader on one replica, collecting what it gets (through a subscription, as the SSE
    response reads)."""

    def __init__(self, log: RedisStreamLog, stream_id: str, after_seq: int = 0) -> None:
        self.events: list[Envelope] = []
        self.subscribed = asyncio.Event()
        self.task = asyncio.create_task(self._follow(log, stream_id, after_seq))

    async def _follow(self, log: RedisStreamLog, stream_id: str, after_seq: int) -> None:
        sub = await log.subscribe(stream_id, after_seq)
        self.subscribed.set()
        async for env in read_subscription(sub, after_seq):
            self.events.append(env)

    async def end(self, within_s: float = 30) -> list[Envelope]:
        await asyncio.wait_for(self.task, within_s)
        return self.events


def _error(env: Envelope) -> ErrorEvent:
    assert env.type == "error"
    return ErrorEvent.model_validate_json(env.data)


def _exactly_once_in_order(events: list[Envelope], first: int = 1) -> None:
    """Seqs first, first+1, ... with one terminal event, the last (a reader's own or not)."""
    assert [e.terminal for e in events].count(True) == 1 and events[-1].terminal
    logged = [e.seq for e in events if e.seq != READER_SEQ]
    assert logged == list(range(first, first + len(logged)))


async def _entries(raw: Any, key: str) -> list[tuple[int, str]]:
    return [(int(i.split("-")[1]), f["t"]) for i, f in await raw.xrange(key)]


@pytest.fixture
def own(tmp_path: Path) -> Iterator[OwnRedis]:
    """A redis-server of this test's own, to restart and kill."""
    with own_redis(tmp_path) as server:
        yield server


@pytest.fixture
async def shared(redis_settings: dict[str, Any]) -> AsyncIterator[tuple[str, str, Any]]:
    raw = aioredis.Redis.from_url(redis_settings["redis_url"], decode_responses=True)
    yield redis_settings["redis_url"], redis_settings["redis_prefix"], raw
    await raw.aclose()


async def test_silent_owner_is_not_declared_lost(shared) -> None:
    url, prefix, raw = shared
    a, b = await _log(url, prefix), await _log(url, prefix)
    try:
        await a.create("quiet", owner=None, session_id=None)
        a.emit("quiet", TokenEvent(content="thinking", index=0))
        await a.flush()
        reader = Follower(b, "quiet")
        await _until(lambda: len(reader.events) == 1)
        await asyncio.sleep(4 * LEASE_S)  # a model that says nothing for several leases
        assert len(reader.events) == 1 and not reader.task.done()
        a.emit("quiet", TokenEvent(content="answer", index=1))
        a.emit("quiet", done_event(2))
        events = await reader.end()
        assert [(e.seq, e.type) for e in events] == [(1, "token"), (2, "token"), (3, "done")]
        assert await _entries(raw, f"{prefix}:s:quiet") == [(1, "token"), (2, "token"), (3, "done")]
    finally:
        await a.aclose()
        await b.aclose()


async def test_stopped_owner_is_declared_lost_once_with_the_next_id(shared) -> None:
    url, prefix, raw = shared
    a, b, c = await _log(url, prefix), await _log(url, prefix), await _log(url, prefix)
    try:
        await a.create("gone", owner=None, session_id=None)
        a.emit("gone", TokenEvent(content="x", index=0))
        a.emit("gone", TokenEvent(content="y", index=1))
        await a.aclose()  # its lease task stops, the stream unfinished
        first, second = Follower(b, "gone"), Follower(c, "gone")
        for events in (await first.end(), await second.end()):
            assert [(e.seq, e.type) for e in events] == [(1, "token"), (2, "token"), (3, "error")]
            error = _error(events[-1])
            assert error.code == "BACKEND_UNAVAILABLE" and error.retryable
            assert "TOKENRELAY" not in error.message + error.suggestion
        assert first.events[-1] == second.events[-1]
        assert await _entries(raw, f"{prefix}:s:gone") == [(1, "token"), (2, "token"), (3, "error")]
        # it ends lost (already), nothing appended
        assert await b._reader.declare_lost("gone") == lua.ALREADY_LOST
        assert len(await raw.xrange(f"{prefix}:s:gone")) == 3
        info = await b.info("gone")
        assert info is not None and info.finished and info.last_seq == 3
    finally:
        await b.aclose()
        await c.aclose()


async def test_owner_back_after_declared_lost_does_not_corrupt_the_stream(shared, caplog) -> None:
    url, prefix, raw = shared
    a, b = await _log(url, prefix), await _log(url, prefix)
    try:
        await a.create("stalled", owner=None, session_id=None)
        await a.create("other", owner=None, session_id=None)
        a.emit("stalled", TokenEvent(content="x", index=0))
        a.emit("other", TokenEvent(content="x", index=0))
        await a.flush()
        assert a._renewer is not None
        a._renewer.cancel()  # the owner stalls: no renewals, no writes
        events = await Follower(b, "stalled").end()
        assert [(e.seq, e.type) for e in events] == [(1, "token"), (2, "error")]

        # it comes back and goes on as if nothing happened, the other stream in the same batch
        caplog.set_level(logging.WARNING, logger="tokenrelay.streams.redis")
        a.emit("stalled", TokenEvent(content="late", index=1))
        a.emit("other", TokenEvent(content="y", index=1))
        a.emit("stalled", TokenEvent(content="later", index=2))
        a.emit("stalled", done_event(3))
        a.emit("other", done_event(2))
        await a.flush()
        assert await _entries(raw, f"{prefix}:s:stalled") == [(1, "token"), (2, "error")]
        assert await _entries(raw, f"{prefix}:s:other") == [(1, "token"), (2, "token"), (3, "done")]
        assert "stalled is no longer copied" in caplog.text and "declared it lost" in caplog.text
        again = await Follower(b, "stalled").end()
        assert again == events
        info = await b.info("stalled")
        assert info is not None and info.finished and info.last_seq == 2
    finally:
        await a.aclose()
        await b.aclose()


async def test_redis_restart_without_persistence_mid_stream(own: OwnRedis) -> None:
    a, b = await _log(own.url), await _log(own.url)
    try:
        await a.create("done-before", owner="k1", session_id="s0")
        a.emit("done-before", TokenEvent(content="old", index=0))
        a.emit("done-before", done_event(1))
        await a.create("live", owner="k1", session_id="s1", locale="ko")
        for i in range(5):
            a.emit("live", TokenEvent(content=f"t{i}", index=i))
        await a.flush()
        reader = Follower(b, "live")
        await _until(lambda: len(reader.events) == 5)

        restart = asyncio.create_task(asyncio.to_thread(own.restart, 0.5))
        index = 5
        while not restart.done():  # the model goes on while Redis is away
            a.emit("live", TokenEvent(content=f"t{index}", index=index))
            index += 1
            await asyncio.sleep(0.05)
        await restart
        for _ in range(5):
            a.emit("live", TokenEvent(content=f"t{index}", index=index))
            index += 1
            await asyncio.sleep(0.05)
        a.emit("live", done_event(index))

        events = await reader.end()
        _exactly_once_in_order(events)
        assert [e.type for e in events] == ["token"] * index + ["done"]
        assert [TokenEvent.model_validate_json(e.data).content for e in events[:-1]] == [
            f"t{i}" for i in range(index)
        ]
        # the owner record is back, for the running and the finished stream alike
        for stream_id, session_id in (("live", "s1"), ("done-before", "s0")):

            async def owned(stream_id: str = stream_id, session_id: str = session_id) -> bool:
                info = await b.info(stream_id)
                return info is not None and info.owner == "k1" and info.session_id == session_id

            await _until(owned)
        live = await b.info("live")
        assert live is not None and live.locale == "ko"  # its language, written again too
        replay = await Follower(b, "live").end()
        assert replay == events
        assert [e.type for e in await Follower(b, "done-before").end()] == ["token", "done"]
    finally:
        await a.aclose()
        await b.aclose()


async def test_redis_restart_under_a_silent_owner_is_written_again_by_its_lease(
    own: OwnRedis,
) -> None:
    a, b = await _log(own.url), await _log(own.url)
    try:
        await a.create("hush", owner="k2", session_id=None)
        for i in range(3):
            a.emit("hush", TokenEvent(content=f"t{i}", index=i))
        await a.flush()
        reader = Follower(b, "hush")
        await _until(lambda: len(reader.events) == 3)
        await asyncio.to_thread(own.restart, 0.2)  # nothing is written meanwhile

        async def back() -> bool:
            info = await b.info("hush")
            return info is not None and info.owner == "k2" and info.last_seq == 3

        await _until(back)  # the lease timer saw the stream gone and wrote it again
        late = Follower(b, "hush")  # a reader that starts after the restart, from the start
        await _until(lambda: len(late.events) == 3)
        a.emit("hush", TokenEvent(content="t3", index=3))
        a.emit("hush", done_event(4))
        for events in (await reader.end(), await late.end()):
            _exactly_once_in_order(events)
            assert [e.type for e in events] == ["token"] * 4 + ["done"]
    finally:
        await a.aclose()
        await b.aclose()


async def test_client_kills_during_a_fast_stream_lose_nothing(own: OwnRedis) -> None:
    a, b = await _log(own.url), await _log(own.url)
    try:
        await a.create("storm", owner=None, session_id=None)
        reader = Follower(b, "storm")
        # the subscribe itself fails under the storm (BackendUnavailable, before any event;
        # a client retries it): the storm is for a reader that follows
        await _until(lambda: reader.subscribed.is_set() or reader.task.done())
        storming = True

        async def storm() -> int:
            kills = 0
            while storming:  # kill every client connection, over and over, while it writes
                await asyncio.to_thread(own.cli, "CLIENT", "KILL", "TYPE", "normal")
                kills += 1
                await asyncio.sleep(0.01)
            return kills

        killer = asyncio.create_task(storm())
        count = 0
        while count < 600 or (not killer.done() and count < 6000):
            a.emit("storm", TokenEvent(content=f"t{count}", index=count))
            count += 1
            await asyncio.sleep(0.001 if count % 4 == 0 else 0)
            if count == 600:
                storming = False
        assert await killer > 5
        a.emit("storm", done_event(count))
        events = await reader.end(within_s=60)
        _exactly_once_in_order(events)
        assert [TokenEvent.model_validate_json(e.data).content for e in events[:-1]] == [
            f"t{i}" for i in range(count)
        ]
        assert events[-1].type == "done"
    finally:
        await a.aclose()
        await b.aclose()


class _LosesACancel(aioredis.Redis):
    """A real client that, once armed, loses the cancel of one command as redis-py does on
    Python 3.11 when the cancel lands in the loop step where the command's send completed
    (its `asyncio.wait_for` returns the send's outcome, here a dropped connection, and the
    cancel is gone): the command waits until cancelled, then raises `ConnectionError`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.armed: set[str] = set()
        self.caught = asyncio.Event()

    async def _lose_the_cancel(self, command: str) -> None:
        if command in self.armed:
            self.armed.discard(command)
            self.caught.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                raise redis_errors.ConnectionError("Connection closed by server.") from None

    async def evalsha(self, *args: Any, **kwargs: Any) -> Any:
        await self._lose_the_cancel("evalsha")
        return await super().evalsha(*args, **kwargs)

    async def xread(self, *args: Any, **kwargs: Any) -> Any:
        await self._lose_the_cancel("xread")
        return await super().xread(*args, **kwargs)


def _losing_log(url: str, prefix: str) -> tuple[RedisStreamLog, _LosesACancel]:
    client = _LosesACancel.from_url(url, decode_responses=True)
    return RedisStreamLog(client, prefix=prefix, ttl_s=30, lease_s=LEASE_S), client


async def test_aclose_ends_when_a_lease_renewal_loses_its_cancel(shared) -> None:
    """The hang of test_client_kills_during_a_fast_stream_lose_nothing: aclose cancelled the
    lease task once, the cancel was lost in a renewal, the task slept on and aclose awaited
    it forever."""
    url, prefix, _ = shared
    a, client = _losing_log(url, prefix)
    await a.create("renewing", owner=None, session_id=None)
    client.armed.add("evalsha")
    await asyncio.wait_for(client.caught.wait(), 20)  # the lease task is in a renewal
    closing = asyncio.create_task(a.aclose())
    await asyncio.wait({closing}, timeout=20)
    assert closing.done() and a._renewer is not None and a._renewer.done()


async def test_closed_remote_subscription_ends_when_its_read_loses_the_cancel(shared) -> None:
    url, prefix, _ = shared
    a = await _log(url, prefix)
    b, client = _losing_log(url, prefix)
    try:
        await a.create("followed", owner=None, session_id=None)
        a.emit("followed", TokenEvent(content="x", index=0))
        await a.flush()
        sub = await b.subscribe("followed")
        await _until(lambda: len(sub.take(0)) == 1)
        client.armed.add("xread")
        await asyncio.wait_for(client.caught.wait(), 20)  # the reader is in an XREAD
        sub.close()  # the reader's response went away
        await _until(lambda: sub.done)  # its read ends: no lease kept up for nobody
    finally:
        await a.aclose()
        await b.aclose()


async def test_events_deleted_under_a_reader_end_with_stream_incomplete(shared) -> None:
    url, prefix, raw = shared
    a, b = await _log(url, prefix), await _log(url, prefix)
    try:
        for stream_id in ("holed", "trimmed"):
            await a.create(stream_id, owner=None, session_id=None)
            for i in range(10):
                a.emit(stream_id, TokenEvent(content=f"t{i}", index=i))
        await a.aclose()  # the owner is gone: nobody can write them again
        await raw.xdel(f"{prefix}:s:holed", "0-4", "0-5")
        await raw.xtrim(f"{prefix}:s:trimmed", maxlen=3, approximate=False)

        events = await Follower(b, "holed").end()
        assert [e.seq for e in events] == [1, 2, 3, READER_SEQ]
        error = _error(events[-1])
        assert error.code == "STREAM_INCOMPLETE" and not error.retryable
        events = await Follower(b, "trimmed").end()
        assert [e.seq for e in events] == [READER_SEQ]
        assert _error(events[0]).code == "STREAM_INCOMPLETE"
        # a resume from the last event it got meets the same gap, never a skip
        events = await Follower(b, "holed", after_seq=3).end()
        assert [e.seq for e in events] == [READER_SEQ]
    finally:
        await b.aclose()


async def test_stream_vanished_under_a_reader_ends_with_stream_incomplete(shared) -> None:
    url, prefix, raw = shared
    a, b = await _log(url, prefix), await _log(url, prefix)
    try:
        await a.create("vanish", owner=None, session_id=None)
        a.emit("vanish", TokenEvent(content="x", index=0))
        await a.flush()
        assert a._renewer is not None
        a._renewer.cancel()
        await raw.set(f"{prefix}:alive:vanish", 1, ex=60)  # an owner that looks alive
        reader = Follower(b, "vanish")
        await _until(lambda: len(reader.events) == 1)
        await raw.delete(f"{prefix}:s:vanish", f"{prefix}:meta:vanish", f"{prefix}:alive:vanish")
        events = await reader.end()
        assert [e.seq for e in events] == [1, READER_SEQ]
        assert _error(events[-1]).code == "STREAM_INCOMPLETE"
    finally:
        await a.aclose()
        await b.aclose()


async def test_redis_killed_for_good_under_a_reader(own: OwnRedis) -> None:
    a = await _log(own.url)
    b = await _log(own.url, outage_s=1.0)
    try:
        await a.create("s", owner=None, session_id=None)
        a.emit("s", TokenEvent(content="x", index=0))
        a.emit("s", TokenEvent(content="y", index=1))
        await a.flush()
        sub = await b.subscribe("s")
        await _until(lambda: len(sub.take(0)) == 2)
        await asyncio.to_thread(own.stop)
        events = [env async for env in read_subscription(sub)]
        assert [e.seq for e in events] == [1, 2, READER_SEQ]
        error = _error(events[-1])
        assert error.code == "BACKEND_UNAVAILABLE" and error.retryable
        assert "TOKENRELAY" not in error.message + error.suggestion
        frames = parse_frames(encode_frames("s", events).decode())
        assert [f.id for f in frames] == ["s:1", "s:2", None]
        assert frames[-1].type == "error"
    finally:
        await a.aclose()
        await b.aclose()


async def _source(envs: list[Envelope], fail: BaseException | None = None):
    for env in envs:
        yield env
        await asyncio.sleep(0)
    if fail is not None:
        raise fail


def _token(seq: int) -> Envelope:
    return Envelope(seq, "token", TokenEvent(content=str(seq), index=seq).model_dump_json())


async def test_pump_subscription_takes_non_consecutive_seqs() -> None:
    end = reader_error(StreamTimeout("cut", suggestion="again"))
    sub = PumpSubscription(_source([_token(3), _token(5), _token(6), end]), after_seq=2)
    await asyncio.wait_for(sub.waiter(), 5)
    await _until(lambda: sub.done)
    assert sub.take(2) == [_token(3), _token(5), _token(6), end]
    assert sub.take(3) == [_token(5), _token(6), end]
    assert sub.take(4) == [_token(5), _token(6), end]
    assert sub.take(5) == [_token(6), end]
    assert sub.take(6) == [end]
    assert sub.pairs(5, 2) == ["token", _token(6).data, "error", end.data]
    sub.close()


async def test_pump_subscription_ends_a_failed_read_with_one_terminal_event() -> None:
    sub = PumpSubscription(_source([_token(1)], fail=RuntimeError("boom")), after_seq=0)
    await _until(lambda: sub.done)
    events = sub.take(0)
    assert [e.seq for e in events] == [1, READER_SEQ]
    assert _error(events[-1]).code == "INTERNAL_ERROR" and "boom" not in events[-1].data
    assert sub.take(1) == events[1:]
    sub.close()


def test_reader_made_events_have_no_id_line() -> None:
    env = reader_error(StreamTimeout("cut", suggestion="again"))
    for names in (True, False):
        for frame in (
            encode_sse("s", env, event_names=names),
            encode_sse("s", env, event_names=names, retry_ms=1000),
            encode_frames("s", [env], event_names=names),
            encode_frames("s", [_token(1), env], event_names=names),
        ):
            parsed = parse_frames(frame.decode())
            assert parsed[-1].id is None and parsed[-1].type == "error"
            assert b"s:0" not in frame
