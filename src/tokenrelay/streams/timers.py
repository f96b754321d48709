"""Coarse timers: the timeouts of many streams on few event-loop timers.

Every open stream arms three timeouts that almost never fire: its deadline, its provider's
idle watchdog and its reader's heartbeat. Under uvloop each `call_later` is a timer object
and a libuv timer of its own; three of them were a noticeable part of the memory per open
idle stream (docs/benchmarks.md). `call_later` here rounds a delay of a
second or more up to the next quarter second and shares one loop timer among everything due
in that quarter: an armed timeout costs one small entry. A timeout fires up to `TICK` late,
never early; shorter delays go to the loop as they are.
"""

from __future__ import annotations

import asyncio
import math
import weakref
from collections.abc import Callable
from typing import Any, Protocol

TICK = 0.25  # seconds: how late a coarse timeout may fire
COARSE_FROM = 1.0  # seconds: shorter delays get a loop timer of their own


class Cancellable(Protocol):
    def cancel(self) -> None: ...


class Timeout:
    """An armed timeout; `cancel()` as with the loop's `TimerHandle`."""

    __slots__ = ("_args", "_callback")

    def __init__(self, callback: Callable[..., object], args: tuple[Any, ...]) -> None:
        self._callback: Callable[..., object] | None = callback
        self._args = args

    def cancel(self) -> None:
        self._callback = None
        self._args = ()  # what it would have been called with is not kept alive

    def cancelled(self) -> bool:
        return self._callback is None

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        callback, args = self._callback, self._args
        if callback is None:
            return
        self.cancel()
        try:
            callback(*args)
        except Exception as exc:  # as the loop treats a failing callback: report, go on
            loop.call_exception_handler(
                {"message": "coarse timer callback failed", "exception": exc}
            )


class _Wheel:
    """One loop's timeouts, by the quarter second they are due in. It keeps no reference to
    its loop: `_wheels` holds it under a weak reference to the loop, and a value that
    referred to its key would keep every closed loop (and its wheel) alive."""

    def __init__(self) -> None:
        self._due: dict[int, list[Timeout]] = {}

    def add(self, loop: asyncio.AbstractEventLoop, delay: float, timeout: Timeout) -> None:
        slot = math.ceil((loop.time() + delay) / TICK)
        due = self._due.get(slot)
        if due is None:
            due = self._due[slot] = []
            loop.call_at(slot * TICK, self._fire, slot)
        due.append(timeout)

    def _fire(self, slot: int) -> None:
        loop = asyncio.get_running_loop()
        for timeout in self._due.pop(slot, ()):
            timeout._run(loop)


_wheels: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Wheel] = weakref.WeakKeyDictionary()


def call_later(delay: float, callback: Callable[..., object], *args: Any) -> Cancellable:
    """`loop.call_later` for timeouts: coarse (see module doc) from `COARSE_FROM` seconds."""
    loop = asyncio.get_running_loop()
    if delay < COARSE_FROM:
        return loop.call_later(delay, callback, *args)
    wheel = _wheels.get(loop)
    if wheel is None:
        wheel = _wheels[loop] = _Wheel()
    timeout = Timeout(callback, args)
    wheel.add(loop, delay, timeout)
    return timeout
