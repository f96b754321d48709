"""Two real server processes sharing real Redis and PostgreSQL: resume and drain across them."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.faults_harness import after_events, read_sse
from tests.helpers import Frame
from tests.processes import ServerProcess, serve
from tokenrelay.providers.scripted import default_reply, split_pieces


async def _read(
    client: httpx.AsyncClient, method: str, url: str, *, stop_after: int | None = None, **kw: Any
) -> list[Frame]:
    """Read events until the server ends the response (or until `stop_after` events)."""
    stop = after_events(stop_after) if stop_after is not None else None
    got = await read_sse(client, method, url, stop_when=stop, **kw)
    assert got.status == 200, got.status
    return got.frames[:stop_after] if stop_after is not None else got.frames


def _replicas(tmp_path: Path, shared: dict[str, Any], **extra: Any) -> tuple[Any, Any]:
    common = {"provider": "scripted", "disconnect_grace_s": 10, **shared, **extra}
    return serve(tmp_path, "a", **common), serve(tmp_path, "b", **common)


def _expected(tokens: int) -> str:
    return "".join(split_pieces(default_reply("replicas"), tokens))


BODY = {
    "message": "replicas",
    "options": {"max_tokens": 1000, "scripted": {"tokens": 150, "delay_ms": 10}},
}


async def _resume(
    client: httpx.AsyncClient, server: ServerProcess, got: list[Frame]
) -> list[Frame]:
    stream_id = got[0].json["stream_id"]
    return await _read(
        client,
        "GET",
        f"{server.url}/api/streams/{stream_id}",
        headers={"Last-Event-ID": got[-1].id or ""},
    )


async def test_cut_on_one_replica_resume_on_the_other(
    tmp_path: Path, redis_settings: dict[str, Any], postgres_settings: dict[str, Any]
) -> None:
    one, two = _replicas(tmp_path, {**redis_settings, **postgres_settings})
    with one as a, two as b:
        async with httpx.AsyncClient(timeout=60) as client:
            got = await _read(client, "POST", f"{a.url}/api/chat/stream", json=BODY, stop_after=20)
            rest = await _resume(client, b, got)
            session_id = got[0].json["session_id"]
            await asyncio.sleep(0.2)
            history = (await client.get(f"{b.url}/api/sessions/{session_id}")).json()
    frames = got + rest
    stream_id = frames[0].json["stream_id"]
    assert [f.id for f in frames] == [f"{stream_id}:{i}" for i in range(1, len(frames) + 1)]
    assert frames[-1].type == "done"
    text = "".join(f.json["content"] for f in frames if f.type == "token")
    assert text == _expected(150)
    assert history["messages"][-1]["content"] == text
    assert history["messages"][-1]["status"] == "complete"


async def test_sigterm_mid_stream_clients_resume_elsewhere_and_the_answer_completes(
    tmp_path: Path, redis_settings: dict[str, Any], postgres_settings: dict[str, Any]
) -> None:
    one, two = _replicas(tmp_path, {**redis_settings, **postgres_settings}, shutdown_grace_s=20)
    with one as a, two as b:
        async with httpx.AsyncClient(timeout=60) as client:
            reading = asyncio.create_task(
                _read(client, "POST", f"{a.url}/api/chat/stream", json=BODY)
            )
            await asyncio.sleep(0.5)
            a.terminate()  # the response on A ends; generation goes on there for the grace
            got = await asyncio.wait_for(reading, 30)
            assert got and got[-1].type == "token", "A released its reader before the end"
            rest = await _resume(client, b, got)
            exit_code = await asyncio.to_thread(a.wait, 60)
    frames = got + rest
    assert frames[-1].type == "done"
    assert "".join(f.json["content"] for f in frames if f.type == "token") == _expected(150)
    # a clean shutdown: uvicorn finished, then re-raised SIGTERM for the exit status
    assert exit_code in (0, -15)
    assert "Application shutdown complete" in a.output()


async def test_sigterm_past_the_grace_ends_with_a_retryable_error(
    tmp_path: Path, redis_settings: dict[str, Any], postgres_settings: dict[str, Any]
) -> None:
    body = {
        "message": "replicas",
        "options": {"max_tokens": 5000, "scripted": {"tokens": 3000, "delay_ms": 10}},
    }
    one, two = _replicas(tmp_path, {**redis_settings, **postgres_settings}, shutdown_grace_s=1)
    with one as a, two as b:
        async with httpx.AsyncClient(timeout=60) as client:
            reading = asyncio.create_task(
                _read(client, "POST", f"{a.url}/api/chat/stream", json=body)
            )
            await asyncio.sleep(0.5)
            a.terminate()
            got = await asyncio.wait_for(reading, 30)
            rest = await _resume(client, b, got)
            session_id = got[0].json["session_id"]
            history = (await client.get(f"{b.url}/api/sessions/{session_id}")).json()
    frames = got + rest
    last = frames[-1].json
    assert last["type"] == "error"
    assert last["code"] == "BACKEND_UNAVAILABLE" and last["retryable"] is True
    answer = history["messages"][-1]
    assert answer["status"] == "interrupted"
    assert answer["content"] == "".join(f.json["content"] for f in frames if f.type == "token")


async def test_cancel_on_one_replica_stops_generation_on_the_other(
    tmp_path: Path, redis_settings: dict[str, Any], postgres_settings: dict[str, Any]
) -> None:
    body = {
        "message": "replicas",
        "options": {"max_tokens": 5000, "scripted": {"tokens": 3000, "delay_ms": 10}},
    }
    one, two = _replicas(tmp_path, {**redis_settings, **postgres_settings})
    with one as a, two as b:
        async with httpx.AsyncClient(timeout=60) as client:
            got = await _read(client, "POST", f"{a.url}/api/chat/stream", json=body, stop_after=5)
            stream_id = got[0].json["stream_id"]
            cancel = await client.post(f"{b.url}/api/streams/{stream_id}/cancel")
            rest = await _resume(client, b, got)
    assert cancel.status_code == 200 and cancel.json()["cancelled"] is True
    assert rest[-1].type == "error"
    assert rest[-1].json["code"] == "CANCELLED"
    assert sum(f.type == "token" for f in got + rest) < 3000
