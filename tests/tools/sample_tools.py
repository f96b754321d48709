"""Tools for the agent-loop tests, loaded through TOKENRELAY_TOOL_MODULES like a user's own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from tokenrelay.tools import Progress, ToolContext, tool

_groups: dict[str, asyncio.Barrier] = {}
HANG_CANCELLED: list[str] = []  # call ids of `hang` calls that were cancelled


@tool
async def meet(group: str, parties: int, ctx: ToolContext) -> dict[str, Any]:
    """Wait until `parties` calls of the same group are running at once (proves concurrency:
    run one after another, the first would wait forever and time out).

    Args:
        group: a name shared by the calls that meet
        parties: how many calls meet
    """
    barrier = _groups.setdefault(group, asyncio.Barrier(parties))
    await ctx.progress(f"waiting in {group}")
    await barrier.wait()
    return {"group": group, "met": parties, "call_id": ctx.call_id}


@tool
async def steps(count: int) -> AsyncIterator[Progress | dict[str, int]]:
    """Report progress `count` times, then finish.

    Args:
        count: how many progress messages
    """
    for i in range(count):
        yield Progress(f"step {i + 1} of {count}")
    yield {"steps": count}


@tool
def boom(reason: str = "kaboom") -> str:
    """Always raises."""
    raise RuntimeError(reason)


@tool
async def hang(ctx: ToolContext) -> str:
    """Never returns (until cancelled or timed out)."""
    try:
        await ctx.progress("hanging")
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        HANG_CANCELLED.append(ctx.call_id)
        raise
    return "never"


@tool
def unserialisable() -> object:
    """Returns something that is not JSON."""
    return object()


@tool(name="echo", description="Echo the text back.")
def echo_text(text: str) -> dict[str, str]:
    return {"echo": text}
