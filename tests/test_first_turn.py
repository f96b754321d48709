"""A new session's first turn: the answer starts while the session is written, and nothing is
reported done (or stored after it) before that write has landed."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.helpers import chat_stream, parse_frames
from tokenrelay.errors import ErrorCode, TokenRelayError
from tokenrelay.sessions.base import TurnStart


class GatedStart:
    """The app's session store, with new sessions' first write held until `open` is set (or
    failing, with `fail`)."""

    writes_in_order = False  # a later write may land before the held one

    def __init__(self, inner: Any, *, fail: bool = False) -> None:
        self._inner = inner
        self.open = asyncio.Event()
        self.fail = fail
        self.written: list[str] = []

    async def start_turn(
        self,
        session_id: str | None,
        user_text: str,
        *,
        owner: str | None = None,
        planned: TurnStart | None = None,
        **placeholder: Any,  # the answer's stream and replica (crash recovery)
    ) -> TurnStart:
        if session_id is None:
            await self.open.wait()
            if self.fail:
                raise TokenRelayError(
                    "the session store is unreachable",
                    suggestion="retry",
                    code=ErrorCode.BACKEND_UNAVAILABLE,
                    retryable=True,
                )
        start: TurnStart = await self._inner.start_turn(
            session_id, user_text, owner=owner, planned=planned, **placeholder
        )
        self.written.append(start.session_id)
        return start

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


async def test_tokens_flow_before_the_new_session_is_written(live_server: Any) -> None:
    body = {"message": "hello", "options": {"scripted": {"tokens": 5}}}
    async with live_server() as srv, httpx.AsyncClient(base_url=srv.url, timeout=10) as client:
        services = srv.app.state.services
        gate = GatedStart(services.sessions)
        services.sessions = gate
        seen: list[dict[str, Any]] = []
        async with client.stream("POST", "/api/chat/stream", json=body) as response:
            raw = ""
            async for chunk in response.aiter_text():
                raw += chunk
                seen = [f.json for f in parse_frames(raw) if f.data]
                if sum(1 for e in seen if e["type"] == "token") == 5 and not gate.open.is_set():
                    # every token is out while the write is still held: nothing said done
                    assert [e["type"] for e in seen] == ["metadata"] + ["token"] * 5
                    assert gate.written == []
                    gate.open.set()
        history = await client.get(f"/api/sessions/{seen[0]['session_id']}")
    assert seen[-1]["type"] == "done"
    assert seen[-1]["session_id"] == seen[0]["session_id"] == gate.written[0]
    assert seen[-1]["message_id"] == seen[0]["message_id"]
    messages = history.json()["messages"]
    assert [(m["role"], m["content"], m["status"]) for m in messages] == [
        ("user", "hello", "complete"),
        ("assistant", "".join(e["content"] for e in seen if e["type"] == "token"), "complete"),
    ]


async def test_a_failed_first_write_ends_the_stream_with_its_error(live_server: Any) -> None:
    async with live_server() as srv:
        services = srv.app.state.services
        gate = GatedStart(services.sessions, fail=True)
        gate.open.set()
        services.sessions = gate
        result = await chat_stream(srv.url, {"message": "hello"})
    assert result.types[0] == "metadata"
    assert result.types[-1] == "error"
    assert result.last()["code"] == "BACKEND_UNAVAILABLE" and result.last()["retryable"]


async def test_a_short_first_turn_is_stored_whole(live_server: Any) -> None:
    """An answer that ends before its session's first write has left (the group window): the
    answer's write is queued behind it, never ahead (SQLite: `writes_in_order`)."""
    body = {"message": "hello", "options": {"scripted": {"tokens": 3}}}
    async with live_server() as srv, httpx.AsyncClient(base_url=srv.url, timeout=10) as client:
        assert srv.app.state.services.sessions.writes_in_order
        results = [await chat_stream(srv.url, body) for _ in range(3)]
        stored = [
            (await client.get(f"/api/sessions/{r.last()['session_id']}")).json()["messages"]
            for r in results
        ]
    for result, messages in zip(results, stored, strict=True):
        assert result.types[-1] == "done" and result.last()["history_length"] == 2
        assert [(m["role"], m["content"], m["status"]) for m in messages] == [
            ("user", "hello", "complete"),
            ("assistant", result.text, "complete"),
        ]
