"""Test helpers: read raw SSE over real HTTP and parse it exactly as the wire carries it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx

from tokenrelay.events import DoneEvent, UsageInfo


@dataclass
class Frame:
    id: str | None = None
    event: str | None = None
    data: str | None = None
    retry: int | None = None
    comments: list[str] = field(default_factory=list)

    @property
    def json(self) -> dict[str, Any]:
        assert self.data is not None
        value: dict[str, Any] = json.loads(self.data)
        return value

    @property
    def type(self) -> str:
        return str(self.json["type"])


def parse_frames(raw: str) -> list[Frame]:
    """Split an SSE body into frames; comment-only frames are kept (heartbeats)."""
    frames: list[Frame] = []
    current = Frame()
    touched = False
    for line in raw.split("\n"):
        if line == "":
            if touched:
                frames.append(current)
            current, touched = Frame(), False
            continue
        touched = True
        if line.startswith(":"):
            current.comments.append(line[1:].strip())
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "id":
            current.id = value
        elif name == "event":
            current.event = value
        elif name == "data":
            current.data = value if current.data is None else current.data + "\n" + value
        elif name == "retry":
            current.retry = int(value)
    return frames


def events_of(frames: list[Frame]) -> list[Frame]:
    return [f for f in frames if f.data is not None]


@dataclass
class StreamResult:
    response: httpx.Response
    raw: str
    frames: list[Frame]

    @property
    def events(self) -> list[Frame]:
        return events_of(self.frames)

    @property
    def types(self) -> list[str]:
        return [f.type for f in self.events]

    @property
    def text(self) -> str:
        return "".join(f.json["content"] for f in self.events if f.type == "token")

    def last(self) -> dict[str, Any]:
        return self.events[-1].json


async def stream(
    base_url: str, method: str, path: str, *, timeout: float = 60, **kwargs: Any
) -> StreamResult:
    async with (
        httpx.AsyncClient(base_url=base_url, timeout=timeout) as client,
        client.stream(method, path, **kwargs) as response,
    ):
        raw = (await response.aread()).decode("utf-8")
    return StreamResult(response, raw, parse_frames(raw))


async def chat_stream(base_url: str, body: dict[str, Any], **kwargs: Any) -> StreamResult:
    return await stream(base_url, "POST", "/api/chat/stream", json=body, **kwargs)


def done_event(total_chunks: int = 2) -> DoneEvent:
    """A terminal `done` event for tests that feed a stream log by hand."""
    return DoneEvent(
        session_id="s",
        message_id="m",
        finish_reason="stop",
        usage=UsageInfo(),
        total_chunks=total_chunks,
        ttft_s=0.0,
        processing_time_s=0.0,
        history_length=2,
    )
