"""Stopping a background task for good, even when a library it awaits loses a cancellation.

On Python 3.11, `asyncio.wait_for` returns (or raises) its inner call's outcome when a
cancellation lands in the loop step where that call completed, and the cancellation is gone
(fixed in 3.12). redis-py sends every command under `wait_for` (its `socket_timeout`), so a
task cancelled while a send finishes, typically as Redis drops the connection, sees a
`ConnectionError` instead, and a loop that rides out Redis errors goes on: its next
`sleep` or `Event.wait` never ends, and whoever awaits the task waits forever. Here a task
is cancelled again until it ends, and a stop is bounded.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

logger = logging.getLogger("tokenrelay.streams")

AGAIN_S = 0.05  # how soon a task that is still running is cancelled again


def cancel_for_good(task: asyncio.Task[Any], again_s: float = AGAIN_S) -> None:
    """Cancel `task`, and again every `again_s` until it has ended."""
    if task.done():
        return
    task.cancel()
    task.get_loop().call_later(again_s, cancel_for_good, task, again_s)


async def stop(task: asyncio.Task[Any] | None, within_s: float = 5.0) -> None:
    """Cancel `task` for good and wait, at most `within_s`, for it to end."""
    if task is None:
        return
    cancel_for_good(task)
    await asyncio.wait({task}, timeout=within_s)
    if not task.done():
        logger.warning(
            "background task %s did not stop within %.1f s of being cancelled; left behind",
            task.get_name(),
            within_s,
        )
    elif not task.cancelled() and task.exception() is not None:
        logger.warning("background task %s failed", task.get_name(), exc_info=task.exception())
