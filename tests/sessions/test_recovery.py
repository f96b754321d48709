"""Crash recovery on both session stores: heartbeats, which answers are orphans, the sweep."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tokenrelay.events import Envelope, MetadataEvent, ToolResultEvent, token_event
from tokenrelay.sessions.base import SessionStore, TurnStart
from tokenrelay.sessions.recovery import REASON, answer_text, recover
from tokenrelay.streams.log import MemoryStreamLog


async def _answer(store: SessionStore, replica: str | None, stream: str | None) -> TurnStart:
    return await store.start_turn(
        None, f"question of {replica}", stream_id=stream, replica_id=replica
    )


async def _orphans(store: SessionStore, me: str, stale_after_s: float | None) -> set[str]:
    return {o.message_id for o in await store.orphans(me, stale_after_s=stale_after_s)}


async def test_orphans_are_answers_of_replicas_without_a_recent_heartbeat(
    store: SessionStore,
) -> None:
    await store.beat("me")
    await store.beat("alive")
    mine = await _answer(store, "me", "s-me")
    alive = await _answer(store, "alive", "s-alive")
    gone = await _answer(store, "never-beat", "s-gone")  # no heartbeat row
    legacy = await _answer(store, None, None)  # a row from before the column
    finished = await _answer(store, "never-beat", "s-done")
    await store.finish_turn(finished.assistant_message_id, "all of it", "complete")

    assert await _orphans(store, "me", 3600) == {
        gone.assistant_message_id,
        legacy.assistant_message_id,
    }
    # the heartbeat grows old: now older than 0 s
    await asyncio.sleep(0.05)
    assert alive.assistant_message_id in await _orphans(store, "me", 0.0)
    assert mine.assistant_message_id not in await _orphans(store, "me", 0.0)
    # one process per database, at its start: every other replica is dead, fresh or not
    await store.beat("alive")
    assert await _orphans(store, "me", None) == {
        alive.assistant_message_id,
        gone.assistant_message_id,
        legacy.assistant_message_id,
    }
    # a clean shutdown removes the row: its answers (none should be left) are orphans
    await store.forget_replica("alive")
    assert alive.assistant_message_id in await _orphans(store, "me", 3600)
    seen = {o.message_id: o for o in await store.orphans("me", stale_after_s=3600)}
    assert seen[gone.assistant_message_id].stream_id == "s-gone"
    assert seen[legacy.assistant_message_id].stream_id is None


async def test_a_checkpoint_and_an_interrupt_change_only_a_streaming_answer(
    store: SessionStore,
) -> None:
    turn = await _answer(store, "r1", "s1")
    await store.checkpoint(turn.assistant_message_id, "Once upon")
    [orphan] = await store.orphans("me", stale_after_s=3600)
    assert orphan.content == "Once upon"

    assert await store.interrupt(turn.assistant_message_id, "Once upon a time", REASON)
    answer = (await store.messages(turn.session_id))[-1]
    assert (answer.status, answer.content) == ("interrupted", "Once upon a time")
    assert answer.metadata == {"interrupted": REASON}

    # the owner's own finish and checkpoint after that: the finish wins, a checkpoint is a no-op
    await store.finish_turn(turn.assistant_message_id, "Once upon a time, the end", "complete")
    await store.checkpoint(turn.assistant_message_id, "Once")
    assert not await store.interrupt(turn.assistant_message_id, "", REASON)
    answer = (await store.messages(turn.session_id))[-1]
    assert (answer.status, answer.content) == ("complete", "Once upon a time, the end")
    assert await store.orphans("me", stale_after_s=None) == []


async def test_the_sweep_keeps_the_log_text_else_the_checkpoint(store: SessionStore) -> None:
    log = MemoryStreamLog()
    await log.create("s-logged", owner=None, session_id=None)
    meta = {"session_id": "x", "message_id": "y", "trace_id": "t", "provider": "p", "model": "m"}
    log.emit("s-logged", MetadataEvent(stream_id="s-logged", **meta))
    for i, piece in enumerate(["Hello", ", ", "world"]):
        log.emit("s-logged", token_event(piece, i))
    logged = await _answer(store, "dead", "s-logged")
    await store.checkpoint(logged.assistant_message_id, "Hello")  # older than the log
    unlogged = await _answer(store, "dead", "s-expired")  # its stream is gone from the log
    await store.checkpoint(unlogged.assistant_message_id, "kept by the checkpoint")
    live = await _answer(store, "me", "s-live")

    await store.beat("dead")
    await asyncio.sleep(0.05)
    await store.beat("me")
    assert await recover(store, log, "me", stale_after_s=0.01) == 2
    assert await recover(store, log, "me", stale_after_s=0.01) == 0  # done once
    # the dead replica's heartbeat row is gone with it (its answers count as orphans however
    # long the period); this replica's row stays (its answer is nobody's orphan)
    late = await _answer(store, "dead", "s-late")
    assert await _orphans(store, "someone", 3600) == {late.assistant_message_id}

    texts = {}
    for turn in (logged, unlogged, live):
        answer = (await store.messages(turn.session_id))[-1]
        texts[turn.assistant_message_id] = (answer.status, answer.content)
    assert texts == {
        logged.assistant_message_id: ("interrupted", "Hello, world"),
        unlogged.assistant_message_id: ("interrupted", "kept by the checkpoint"),
        live.assistant_message_id: ("streaming", ""),
    }


def test_the_log_text_of_an_answer_starts_after_its_last_tool_result() -> None:
    def tok(seq: int, text: str) -> Envelope:
        encoded = token_event(text, seq)
        return Envelope(seq, encoded.type, encoded.data)

    result = ToolResultEvent(call_id="c1", tool="clock", result={"now": "noon"})
    events = [
        tok(1, "Let me check. "),
        Envelope(2, "tool_result", result.model_dump_json()),
        tok(3, "It is "),
        tok(4, "noon."),
    ]
    assert answer_text(events) == "It is noon."
    assert answer_text(events[:1]) == "Let me check. "
    assert answer_text([]) == ""


async def test_restart_recovers_an_answer_cut_by_a_crash_with_its_checkpoint(
    tmp_path: Path,
) -> None:
    """SQLite, one process: at start every other replica is dead, however fresh its row."""
    from tokenrelay.sessions.sqlite import SQLiteSessionStore

    path = tmp_path / "s.sqlite3"
    store = await SQLiteSessionStore.open(path)
    await store.beat("before")
    turn = await _answer(store, "before", "s1")
    await store.checkpoint(turn.assistant_message_id, "half an ans")
    await store.aclose()  # the process "dies" before finish_turn
    store = await SQLiteSessionStore.open(path)
    try:
        await store.beat("after")
        assert await recover(store, MemoryStreamLog(), "after", stale_after_s=None) == 1
        messages = await store.messages(turn.session_id)
    finally:
        await store.aclose()
    assert [(m.status, m.content) for m in messages] == [
        ("complete", "question of before"),
        ("interrupted", "half an ans"),
    ]
