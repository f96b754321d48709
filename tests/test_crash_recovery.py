"""Crash recovery with real processes: after `kill -9` or SIGTERM mid-answer, the session's
answer is `interrupted` with the text it had, never `streaming` forever with none."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx

from tests.helpers import Frame, parse_frames
from tests.processes import ServerProcess, serve
from tokenrelay.providers.scripted import default_reply, split_pieces

QUESTION = "recover me"
BODY = {
    "message": QUESTION,
    "options": {"max_tokens": 1000, "scripted": {"tokens": 400, "delay_ms": 20}},
}
REPLY = "".join(split_pieces(default_reply(QUESTION), 400))


def _complete(raw: str) -> list[Frame]:
    cut = raw.rfind("\n\n")
    return [f for f in parse_frames(raw[: cut + 2]) if f.data is not None] if cut >= 0 else []


def _text(frames: list[Frame]) -> str:
    return "".join(f.json["content"] for f in frames if f.type == "token")


async def _read_then(
    client: httpx.AsyncClient, server: ServerProcess, tokens: int, then: Any
) -> list[Frame]:
    """POST a chat stream, read until `tokens` tokens have come, call `then()` while the
    connection is still open (no disconnect cancels the answer first), return the frames."""
    raw = ""
    async with client.stream("POST", f"{server.url}/api/chat/stream", json=BODY) as response:
        assert response.status_code == 200
        async for chunk in response.aiter_text():
            raw += chunk
            if sum(f.type == "token" for f in _complete(raw)) >= tokens:
                break
        then()
    return _complete(raw)


async def _answer_of(
    client: httpx.AsyncClient, server: ServerProcess, session_id: str
) -> dict[str, Any]:
    history = (await client.get(f"{server.url}/api/sessions/{session_id}")).json()
    answer: dict[str, Any] = history["messages"][-1]
    return answer


def _kill(server: ServerProcess) -> None:
    server.process.kill()
    server.process.wait(timeout=30)


async def test_kill_9_then_restart_keeps_the_checkpointed_prefix_sqlite(tmp_path: Path) -> None:
    """Regression (issue 19): the answer stayed `streaming` with 0 characters after kill -9."""
    settings = {
        "provider": "scripted",
        "data_dir": tmp_path / "data",
        "answer_checkpoint_s": 0.2,
        "disconnect_grace_s": 60,
    }
    async with httpx.AsyncClient(timeout=60) as client:
        with serve(tmp_path, "before", **settings) as before:
            got = await _read_then(client, before, 60, lambda: _kill(before))
        session_id = got[0].json["session_id"]
        with serve(tmp_path, "after", **settings) as after:  # its start-up sweep recovers
            answer = await _answer_of(client, after, session_id)
    assert answer["status"] == "interrupted"
    assert answer["metadata"]["interrupted"] == "replica_lost"
    # the last checkpoint: a prefix of the reply, some of what the client had, never empty
    assert answer["content"] and REPLY.startswith(answer["content"])
    assert len(answer["content"]) < len(REPLY)


async def test_sigterm_past_the_grace_stores_the_partial_answer_sqlite(tmp_path: Path) -> None:
    """SIGTERM: drain, cancel after shutdown_grace_s; the pipeline's own finish stores
    `interrupted` with every token generated, before the process exits."""
    data_dir = tmp_path / "data"
    settings = {
        "provider": "scripted",
        "data_dir": data_dir,
        "answer_checkpoint_s": 0,  # off: the text is the finish's, not a checkpoint's
        "disconnect_grace_s": 60,
        "shutdown_grace_s": 0.5,
    }
    async with httpx.AsyncClient(timeout=60) as client:
        with serve(tmp_path, "one", **settings) as one:
            got = await _read_then(client, one, 30, one.terminate)
            assert await asyncio.to_thread(one.wait, 60) in (0, -15)
    db = sqlite3.connect(data_dir / "tokenrelay.sqlite3")  # as the process left it
    try:
        content, status, metadata = db.execute(
            "SELECT content, status, metadata FROM messages WHERE id = ?",
            (got[0].json["message_id"],),
        ).fetchone()
        replicas = db.execute("SELECT COUNT(*) FROM replicas").fetchone()[0]
    finally:
        db.close()
    assert status == "interrupted"
    assert "interrupted" not in json.loads(metadata)  # the pipeline's finish, not a sweep
    assert REPLY.startswith(content) and content.startswith(_text(got))
    assert len(_text(got)) > 0 and len(content) < len(REPLY)
    assert replicas == 0  # a clean shutdown removed its heartbeat


async def test_kill_9_of_the_owner_the_other_replica_keeps_what_the_client_received(
    tmp_path: Path, redis_settings: dict[str, Any], postgres_settings: dict[str, Any]
) -> None:
    """PostgreSQL + Redis: the other replica's sweep finds the dead owner's answer and stores
    the text of the token events in the shared log: exactly what a client received."""
    settings = {
        "provider": "scripted",
        "disconnect_grace_s": 60,
        "replica_heartbeat_s": 0.5,
        "answer_checkpoint_s": 0,  # the text must come from the log
        **redis_settings,
        **postgres_settings,
    }
    async with httpx.AsyncClient(timeout=60) as client:
        with serve(tmp_path, "a", **settings) as a, serve(tmp_path, "b", **settings) as b:
            got = await _read_then(client, a, 60, lambda: _kill(a))
            stream_id = got[0].json["stream_id"]
            raw = ""  # the rest from the shared log, up to the terminal event
            headers = {"Last-Event-ID": got[-1].id or ""}
            async with client.stream(
                "GET", f"{b.url}/api/streams/{stream_id}", headers=headers
            ) as response:
                assert response.status_code == 200
                async for chunk in response.aiter_text():
                    raw += chunk
            frames = got + _complete(raw)
            assert frames[-1].type == "error"
            deadline = time.monotonic() + 60
            while True:
                answer = await _answer_of(client, b, got[0].json["session_id"])
                if answer["status"] != "streaming" or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
    received = _text(frames)
    assert len(received) > 0 and REPLY.startswith(received)
    assert answer["status"] == "interrupted"
    assert answer["metadata"]["interrupted"] == "replica_lost"
    assert answer["content"] == received


async def test_kill_9_mid_turn_does_not_lock_the_session_on_the_other_replica(
    tmp_path: Path, redis_settings: dict[str, Any], postgres_settings: dict[str, Any]
) -> None:
    """Issue #23's one turn at a time, crash-safe: the killed replica's claim on the session
    holds (409 SESSION_BUSY) only until its heartbeat is stale; then the other replica takes
    the session over, and the killed answer is recovered as `interrupted`."""
    settings = {
        "provider": "scripted",
        "disconnect_grace_s": 60,
        "replica_heartbeat_s": 0.3,
        **redis_settings,
        **postgres_settings,
    }
    ask = {"message": "q2", "session_id": "crash-claim"}
    first = {
        "message": "q1",
        "session_id": "crash-claim",
        "options": {"scripted": {"reply": "a b c d", "tokens": 4, "stall_after": 2}},
    }
    async with httpx.AsyncClient(timeout=60) as client:
        with serve(tmp_path, "a", **settings) as a, serve(tmp_path, "b", **settings) as b:
            raw = ""
            async with client.stream("POST", f"{a.url}/api/chat/stream", json=first) as response:
                async for chunk in response.aiter_text():
                    raw += chunk
                    if sum(f.type == "token" for f in _complete(raw)) >= 2:
                        break
                _kill(a)
            statuses: list[int] = []
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                response = await client.post(f"{b.url}/api/chat", json=ask)
                statuses.append(response.status_code)
                if response.status_code != 409:
                    break
                assert response.json()["code"] == "SESSION_BUSY"
                await asyncio.sleep(0.1)
            while time.monotonic() < deadline:  # the sweep marks the killed answer
                history = (await client.get(f"{b.url}/api/sessions/crash-claim")).json()
                if history["messages"][1]["status"] != "streaming":
                    break
                await asyncio.sleep(0.2)
    assert statuses[-1] == 200 and set(statuses[:-1]) <= {409}
    messages = history["messages"]
    assert [(m["role"], m["content"]) for m in messages][2:] == [
        ("user", "q2"),
        ("assistant", default_reply("q2")),
    ]
    # its text is what reached the shared log before the kill (test above: exactly that)
    assert messages[1]["status"] == "interrupted" and "a b ".startswith(messages[1]["content"])
