"""The in-process stream log (streams/log.py `MemoryStreamLog`)."""

from __future__ import annotations

import gc

import pytest

from tests.helpers import done_event
from tokenrelay.delivery.encoders import Encoder, NativeEncoder, encode_frames
from tokenrelay.errors import StreamNotFound
from tokenrelay.events import (
    Envelope,
    StatusEvent,
    token_event,
    token_json,
)
from tokenrelay.streams.log import MemoryStreamLog, read_subscription


async def test_events_are_numbered_and_readable_from_any_position() -> None:
    log = MemoryStreamLog()
    await log.create("s", owner=None, session_id=None)
    log.emit("s", StatusEvent(message="thinking"))
    lane = log.lane("s")
    lane(token_json("안녕", 0))
    lane(token_json("하세요", 1))
    log.emit("s", done_event())
    sub = await log.subscribe("s")
    taken = sub.take(0)
    assert [(e.seq, e.type) for e in taken] == [
        (1, "status"),
        (2, "token"),
        (3, "token"),
        (4, "done"),
    ]
    assert isinstance(taken[1], Envelope) and taken[1].data == token_event("안녕", 0).data
    assert taken[-1].terminal and not taken[0].terminal
    assert [e.seq for e in sub.take(2)] == [3, 4]
    assert sub.take(4) == [] and sub.done
    assert [e.seq for e in [env async for env in read_subscription(sub, 1)]] == [2, 3, 4]
    info = await log.info("s")
    assert info is not None and info.finished and info.last_seq == 4
    with pytest.raises(StreamNotFound):
        log.emit("s", StatusEvent(message="after the end"))
    with pytest.raises(RuntimeError):
        lane(token_json("after the end", 2))


async def test_it_keeps_no_object_for_the_collector_per_event() -> None:
    """A log holds every event of the last `stream_ttl_s` seconds; as objects the collector
    tracks (named tuples), every older-generation collection walked them all."""
    log = MemoryStreamLog()
    await log.create("s", owner=None, session_id=None)
    lane = log.lane("s")
    gc.collect()
    before = len(gc.get_objects())
    for i in range(2_000):
        lane(token_json(f"piece {i}", i))
    log.emit("s", StatusEvent(message="and one that is not a token"))
    assert len(gc.get_objects()) - before < 20
    assert (await log.info("s")) is not None


async def test_a_pushed_readers_pairs_encode_as_the_envelopes() -> None:
    log = MemoryStreamLog()
    await log.create("s", owner=None, session_id=None)
    lane = log.lane("s")
    for i, piece in enumerate(["첫", " 번째", "\n줄"]):
        lane(token_json(piece, i))
    sub = await log.subscribe("s")
    for after, count in ((0, 1), (0, 3), (1, 2), (2, 5)):
        for names in (True, False):
            expected = encode_frames("s", sub.take(after)[:count], event_names=names)
            encoder = NativeEncoder("s", event_names=names, retry_ms=None)
            assert encoder.pairs(after + 1, sub.pairs(after, count)) == expected
            assert Encoder.pairs(encoder, after + 1, sub.pairs(after, count)) == expected


async def test_the_lane_stores_tokens_and_hands_other_events_on() -> None:
    log = MemoryStreamLog()
    await log.create("s", owner=None, session_id=None)
    handed: list[object] = []
    lane = log.lane("s", handed.append)
    status = StatusEvent(message="thinking")
    lane(token_json("a", 0))
    lane(status)
    assert handed == [status]
    assert [e.type for e in await log.snapshot("s")] == ["token"]
    plain = log.lane("s")  # without `other`: the log's own emit
    plain(status)
    assert [e.type for e in await log.snapshot("s")] == ["token", "status"]
