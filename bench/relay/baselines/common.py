"""What every baseline streams, so that all servers send the same events.

The request body is tokenrelay's: ``{"message": ..., "options": {"scripted": {"tokens": 100,
"delay_ms": 20, "stall_after": null}}}``. A stream is a ``metadata`` event, ``tokens`` token
events ``{"type":"token","content":"word ","index":i}`` each after a pause of ``delay_ms``, and a
``done`` event. ``stall_after=k`` stops after ``k`` tokens and waits until the client leaves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

TOKEN_TEXT = "word "
MAX_TOKENS = 100_000


@dataclass(frozen=True, slots=True)
class Script:
    tokens: int = 100
    delay_s: float = 0.02
    stall_after: int | None = None


def parse_script(body: Any) -> Script:
    """Read ``options.scripted`` from a request body, tolerating anything missing."""
    options = body.get("options") if isinstance(body, dict) else None
    scripted = options.get("scripted") if isinstance(options, dict) else None
    if not isinstance(scripted, dict):
        return Script()
    tokens = int(scripted.get("tokens", 100))
    delay_ms = float(scripted.get("delay_ms", 20))
    stall = scripted.get("stall_after")
    return Script(
        tokens=max(0, min(tokens, MAX_TOKENS)),
        delay_s=max(0.0, delay_ms) / 1000.0,
        stall_after=None if stall is None else max(0, int(stall)),
    )


def metadata_event(stream_id: str) -> dict[str, Any]:
    return {
        "type": "metadata",
        "stream_id": stream_id,
        "session_id": "s-" + stream_id,
        "message_id": "m-" + stream_id,
        "trace_id": "t-" + stream_id,
        "provider": "scripted",
        "model": "scripted",
    }


def token_event(index: int) -> dict[str, Any]:
    return {"type": "token", "content": TOKEN_TEXT, "index": index}


def done_event(stream_id: str, tokens: int) -> dict[str, Any]:
    return {
        "type": "done",
        "session_id": "s-" + stream_id,
        "message_id": "m-" + stream_id,
        "finish_reason": "stop",
        "usage": {"prompt_tokens": 1, "completion_tokens": tokens},
        "total_chunks": tokens,
        "ttft_s": None,
        "processing_time_s": 0.0,
        "history_length": 2,
    }
