"""Coarse timers (streams/timers.py): never early, cancellable, one loop timer per slot."""

from __future__ import annotations

import asyncio
from typing import Any

from tokenrelay.streams import timers


async def test_a_coarse_timeout_fires_once_and_never_early() -> None:
    loop = asyncio.get_running_loop()
    fired: list[tuple[str, float]] = []
    armed = loop.time()
    timers.call_later(1.0, lambda tag: fired.append((tag, loop.time())), "a")
    async with asyncio.timeout(10):
        while not fired:
            await asyncio.sleep(0.05)
    await asyncio.sleep(timers.TICK * 2)
    assert [tag for tag, _ in fired] == ["a"]
    assert fired[0][1] >= armed + 1.0


async def test_cancelled_timeouts_do_not_fire_and_let_go_of_their_arguments() -> None:
    fired: list[str] = []
    big = ["held"] * 1000
    kept = timers.call_later(1.0, fired.append, "kept")
    dropped = timers.call_later(1.0, fired.append, big)
    dropped.cancel()
    assert isinstance(dropped, timers.Timeout) and dropped.cancelled()
    assert dropped._args == ()
    async with asyncio.timeout(10):
        while not fired:
            await asyncio.sleep(0.05)
    await asyncio.sleep(timers.TICK * 2)
    assert fired == ["kept"]
    kept.cancel()  # after firing: nothing happens


async def test_timeouts_due_in_one_slot_share_one_loop_timer() -> None:
    loop = asyncio.get_running_loop()
    handles = [timers.call_later(5.0, lambda: None) for _ in range(1000)]
    wheel = timers._wheels[loop]
    assert 1 <= len(wheel._due) <= 2  # armed within one tick: one slot, two at a boundary
    for handle in handles:
        handle.cancel()


async def test_short_delays_get_a_loop_timer_of_their_own() -> None:
    handle = timers.call_later(0.01, lambda: None)
    assert isinstance(handle, asyncio.TimerHandle)
    handle.cancel()


async def test_a_failing_callback_is_reported_and_the_others_still_run() -> None:
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    fired: list[str] = []

    def fail() -> None:
        raise RuntimeError("boom")

    try:
        timers.call_later(1.0, fail)
        timers.call_later(1.0, fired.append, "after")
        async with asyncio.timeout(10):
            while not (fired and reported):
                await asyncio.sleep(0.05)
    finally:
        loop.set_exception_handler(None)
    assert fired == ["after"]
    assert isinstance(reported[0]["exception"], RuntimeError)


def test_a_closed_loop_and_its_timeouts_are_let_go() -> None:
    import gc
    import weakref

    loop = asyncio.new_event_loop()

    async def arm() -> None:
        timers.call_later(30.0, lambda: None)

    loop.run_until_complete(arm())
    assert loop in timers._wheels
    loop.close()
    gone = weakref.ref(loop)
    del loop
    gc.collect()
    assert gone() is None
