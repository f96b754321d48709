"""SQLite session writes share thread hops and commits (group commit), and a new session's
first write waits a moment for company (`defer`), never longer than the group window."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tokenrelay.errors import SessionNotFound
from tokenrelay.sessions.base import TurnStart, new_id
from tokenrelay.sessions.sqlite import GROUP_WINDOW_S, SQLiteSessionStore


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteSessionStore]:
    opened = await SQLiteSessionStore.open(tmp_path / "s.sqlite3")
    yield opened
    await opened.aclose()


def count_hops(store: SQLiteSessionStore) -> list[int]:
    """Counts the store's trips to its thread (through the worker's public `run`)."""
    hops = [0]
    worker: Any = store._worker
    run: Callable[..., Any] = worker.run

    async def counted(fn: Any) -> Any:
        hops[0] += 1
        return await run(fn)

    worker.run = counted
    return hops


def planned() -> TurnStart:
    return TurnStart(new_id(), new_id(), new_id(), [])


async def test_deferred_new_sessions_share_one_hop(store: SQLiteSessionStore) -> None:
    hops = count_hops(store)
    plans = [planned() for _ in range(5)]
    started = await asyncio.gather(
        *(store.start_turn(None, f"hello {i}", planned=p) for i, p in enumerate(plans))
    )
    assert [s.session_id for s in started] == [p.session_id for p in plans]
    assert hops[0] == 1
    for p in plans:
        assert [m.role for m in await store.messages(p.session_id)] == ["user", "assistant"]


async def test_a_deferred_write_alone_lands_within_the_window(
    store: SQLiteSessionStore,
) -> None:
    plan = planned()
    assert GROUP_WINDOW_S > 0
    await store.start_turn(None, "alone", planned=plan)  # the window's timer sends it
    info = await store.get_session(plan.session_id)
    assert info is not None and info.message_count == 2


async def test_an_immediate_write_takes_the_waiting_ones_along(
    store: SQLiteSessionStore,
) -> None:
    first = await store.start_turn(None, "existing")  # not deferred: no plan
    hops = count_hops(store)
    plan = planned()
    deferred = asyncio.ensure_future(store.start_turn(None, "new", planned=plan))
    await asyncio.sleep(0)  # the deferred write is queued and waiting
    count = await store.finish_turn(first.assistant_message_id, "answer", "complete")
    assert count == 2
    assert hops[0] == 1  # the waiting write went in the finish's group
    assert (await deferred).session_id == plan.session_id


async def test_close_writes_what_is_still_waiting(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    store = await SQLiteSessionStore.open(path)
    plan = planned()
    deferred = asyncio.ensure_future(store.start_turn(None, "at shutdown", planned=plan))
    await asyncio.sleep(0)
    await store.aclose()
    assert (await deferred).session_id == plan.session_id
    reopened = await SQLiteSessionStore.open(path)
    try:
        assert await reopened.get_session(plan.session_id) is not None
    finally:
        await reopened.aclose()


async def test_a_turn_that_needs_its_first_write_sends_it_at_once(
    store: SQLiteSessionStore,
) -> None:
    plan = planned()
    deferred = asyncio.ensure_future(store.start_turn(None, "short answer", planned=plan))
    await asyncio.sleep(0)
    assert store._timer is not None  # waiting for company
    store.send_deferred()  # e.g. the answer ended before the window did
    assert store._timer is None
    assert (await deferred).session_id == plan.session_id


async def test_a_failing_write_fails_alone_in_its_group(store: SQLiteSessionStore) -> None:
    """No savepoints: a group with a failing write is undone and its writes run one by one."""
    existing = await store.start_turn(None, "existing")
    plans = [planned() for _ in range(2)]
    results = await asyncio.gather(
        store.start_turn(None, "first", planned=plans[0]),
        store.start_turn("no-such-session", "lost"),  # SESSION_NOT_FOUND, in the same group
        store.finish_turn(existing.assistant_message_id, "kept", "complete"),
        store.start_turn(None, "second", planned=plans[1]),
        return_exceptions=True,
    )
    assert isinstance(results[1], SessionNotFound)
    assert results[2] == 2
    for plan in plans:
        assert [m.role for m in await store.messages(plan.session_id)] == ["user", "assistant"]
    answer = (await store.messages(existing.session_id))[-1]
    assert (answer.content, answer.status) == ("kept", "complete")


async def test_a_short_turn_is_one_hop(store: SQLiteSessionStore) -> None:
    """The answer's write queued behind a first write that has not landed: one commit."""
    hops = count_hops(store)
    plan = planned()
    # both queued by the calls themselves, in this order (an answer that ended at once)
    first = store.start_turn(None, "hi", planned=plan)
    finishing = store.finish_turn(plan.assistant_message_id, "hello", "complete")
    assert (await first).session_id == plan.session_id
    assert await finishing == 2
    assert hops[0] == 1
    answer = (await store.messages(plan.session_id))[-1]
    assert (answer.content, answer.status) == ("hello", "complete")
