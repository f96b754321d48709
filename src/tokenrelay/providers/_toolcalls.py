"""Assemble streamed tool-call pieces into complete `ToolCall`s. Pure: no I/O, no SDK types.

Providers stream a tool call as a start (id, name) followed by argument text in pieces, keyed by
an index (OpenAI `tool_calls[].index`, Anthropic content block `index`). `ToolCallAccumulator`
collects the pieces; `finish()` returns the calls in index order with parsed arguments.

Malformed argument JSON is kept, not raised: `parse_arguments` returns `{"_raw": text}` so the
tool layer can report a clear tool error back to the model (which usually corrects itself on
the next turn) instead of losing the whole answer. Valid JSON that is not an object (a list, a
number) is kept the same way.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from tokenrelay.providers.base import ToolCall

RAW_ARGUMENTS_KEY = "_raw"


def new_call_id() -> str:
    """An id for providers that do not send one (Gemini may leave `functionCall.id` empty)."""
    return f"call_{uuid.uuid4().hex[:24]}"


def parse_arguments(text: str) -> dict[str, Any]:
    """Parse assembled argument text: `""` -> `{}`, a JSON object -> dict, else `{"_raw": text}`."""
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {RAW_ARGUMENTS_KEY: text}
    if isinstance(value, dict):
        return value
    return {RAW_ARGUMENTS_KEY: text}


@dataclass
class _Pending:
    id: str | None = None
    name: str = ""
    pieces: list[str] = field(default_factory=list)
    initial: dict[str, Any] | None = None  # arguments given whole at the start (Anthropic input)


class ToolCallAccumulator:
    """Collect tool-call starts and argument pieces by index; `finish()` yields them in order."""

    def __init__(self) -> None:
        self._pending: dict[int, _Pending] = {}

    def __bool__(self) -> bool:
        return bool(self._pending)

    def start(
        self, index: int, *, id: str | None, name: str, arguments: dict[str, Any] | None = None
    ) -> None:
        """A new call at `index` (Anthropic `content_block_start` of type tool_use)."""
        self._pending[index] = _Pending(id=id or None, name=name, initial=arguments or None)

    def add(
        self, index: int, *, id: str | None = None, name: str | None = None, arguments: str = ""
    ) -> None:
        """Merge one delta: the first id and name win, argument text is appended."""
        pending = self._pending.setdefault(index, _Pending())
        if id and not pending.id:
            pending.id = id
        if name and not pending.name:
            pending.name = name
        if arguments:
            pending.pieces.append(arguments)

    def pop(self, index: int) -> ToolCall | None:
        """Complete and remove the call at `index` (Anthropic `content_block_stop`)."""
        pending = self._pending.pop(index, None)
        return None if pending is None else _complete(pending)

    def finish(self) -> list[ToolCall]:
        """Complete and remove every call still open, in index order."""
        calls = [_complete(self._pending[i]) for i in sorted(self._pending)]
        self._pending.clear()
        return calls


def _complete(pending: _Pending) -> ToolCall:
    text = "".join(pending.pieces)
    if text.strip() or pending.initial is None:
        arguments = parse_arguments(text)
    else:
        arguments = dict(pending.initial)
    return ToolCall(id=pending.id or new_call_id(), name=pending.name, arguments=arguments)
