"""What a running tool may use besides its arguments: settings, stores and a progress callback.

A tool asks for it by declaring a parameter annotated `ToolContext` (any name); that parameter
is left out of the tool's JSON schema and filled in by the runner. Async generator tools can
report progress by yielding `Progress(...)` instead.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from tokenrelay.config import Settings

ProgressCallback = Callable[[str], Awaitable[None]]


async def _no_progress(message: str) -> None:
    return None


@dataclass(frozen=True, slots=True)
class Progress:
    """Yielded by an async generator tool: one human-readable progress message."""

    message: str


class ToolError(Exception):
    """An expected failure with a message meant for the model and the user, shown as is.

    Say what went wrong and what would work: "no place called 'Xyz' found: give a city name".
    """


@dataclass(frozen=True, slots=True)
class ToolContext:
    settings: Settings
    documents: Any = None  # retrieval.DocumentStore, when the app has one
    owner: str | None = None  # the API key's owner the call runs for (None: auth off)
    call_id: str = ""
    tool_name: str = ""
    on_progress: ProgressCallback = _no_progress

    async def progress(self, message: str) -> None:
        """Report progress; it reaches the client as a `tool_progress` event."""
        await self.on_progress(message)
