"""Resuming streams: random disconnects lose nothing and repeat nothing."""

from __future__ import annotations

import random
from typing import Any

import httpx
import pytest

from tests.helpers import Frame, chat_stream, parse_frames, stream
from tokenrelay.providers.scripted import default_reply, split_pieces


def _complete_frames(raw: str) -> list[Frame]:
    """Only frames whose blank line arrived: what an EventSource would have dispatched."""
    cut = raw.rfind("\n\n")
    return [f for f in parse_frames(raw[: cut + 2]) if f.data is not None] if cut >= 0 else []


async def _read_until_cut(
    client: httpx.AsyncClient, method: str, path: str, cut_after: int, **kwargs: Any
) -> tuple[list[Frame], bool]:
    """Read raw bytes and drop the connection after `cut_after` bytes (mid-frame, usually)."""
    raw = b""
    async with client.stream(method, path, **kwargs) as response:
        assert response.status_code == 200, await response.aread()
        async for chunk in response.aiter_raw():
            raw += chunk
            if len(raw) >= cut_after:
                break
    frames = _complete_frames(raw[:cut_after].decode("utf-8", errors="ignore"))
    return frames, bool(frames) and frames[-1].type in ("done", "error")


async def _resume_to_the_end(url: str, rng: random.Random, tokens: int) -> tuple[list[Frame], int]:
    body = {
        "message": "resume",
        "options": {"max_tokens": 1000, "scripted": {"tokens": tokens, "delay_ms": 1}},
    }
    received: list[Frame] = []
    cuts = 0
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        frames, finished = await _read_until_cut(
            client, "POST", "/api/chat/stream", rng.randint(300, 3000), json=body
        )
        received += frames
        while not finished:
            cuts += 1
            assert received, "the first cut came before the first event; widen the first cut"
            stream_id = received[0].json["stream_id"]
            frames, finished = await _read_until_cut(
                client,
                "GET",
                f"/api/streams/{stream_id}",
                rng.randint(50, 4000),
                headers={"Last-Event-ID": received[-1].id or ""},
            )
            received += frames
    return received, cuts


def _check_exactly_once(received: list[Frame], tokens: int) -> None:
    stream_id = received[0].json["stream_id"]
    assert [f.id for f in received] == [f"{stream_id}:{i}" for i in range(1, len(received) + 1)]
    assert received[-1].type == "done"
    text = "".join(f.json["content"] for f in received if f.type == "token")
    assert text == "".join(split_pieces(default_reply("resume"), tokens))


async def test_hundreds_of_random_disconnects_lose_and_repeat_nothing(live_server) -> None:
    rng = random.Random(20261121)
    total_cuts = 0
    async with live_server(disconnect_grace_s=30) as srv:
        for _ in range(12):
            received, cuts = await _resume_to_the_end(srv.url, rng, tokens=400)
            _check_exactly_once(received, 400)
            total_cuts += cuts
    assert total_cuts >= 200


async def test_resume_through_redis_from_another_app(live_server, redis_settings) -> None:
    """Two apps share one Redis: cut on the first, resume on the second."""
    rng = random.Random(7)
    async with (
        live_server(disconnect_grace_s=30, **redis_settings) as one,
        live_server(disconnect_grace_s=30, **redis_settings) as two,
    ):
        body = {
            "message": "resume",
            "options": {"max_tokens": 1000, "scripted": {"tokens": 300, "delay_ms": 2}},
        }
        async with httpx.AsyncClient(base_url=one.url, timeout=30) as client:
            received, finished = await _read_until_cut(
                client, "POST", "/api/chat/stream", 1500, json=body
            )
        assert not finished
        async with httpx.AsyncClient(base_url=two.url, timeout=30) as client:
            while received[-1].type != "done":
                stream_id = received[0].json["stream_id"]
                frames, _ = await _read_until_cut(
                    client,
                    "GET",
                    f"/api/streams/{stream_id}",
                    rng.randint(200, 5000),
                    headers={"Last-Event-ID": received[-1].id or ""},
                )
                received += frames
    _check_exactly_once(received, 300)


async def test_eventsource_reconnect_to_the_chat_url_resumes(live_server) -> None:
    async with live_server(disconnect_grace_s=30) as srv:
        body = {"message": "resume", "options": {"scripted": {"tokens": 50, "delay_ms": 5}}}
        async with httpx.AsyncClient(base_url=srv.url, timeout=30) as client:
            first, _ = await _read_until_cut(client, "POST", "/api/chat/stream", 800, json=body)
        provider = srv.app.state.services.providers.get("scripted")
        rest = await stream(
            srv.url,
            "GET",
            "/api/chat/stream",
            params={"message": "this must not be asked again"},
            headers={"Last-Event-ID": first[-1].id or ""},
        )
    assert provider.stats.started == 1  # the model was not asked again
    _check_exactly_once(first + rest.events, 50)


async def test_finished_streams_stay_resumable_then_expire(live_server) -> None:
    async with live_server(stream_ttl_s=0.3) as srv:
        result = await chat_stream(srv.url, {"message": "hi"})
        stream_id = result.events[0].json["stream_id"]
        again = await stream(srv.url, "GET", f"/api/streams/{stream_id}")
        assert again.types == result.types
        import asyncio

        await asyncio.sleep(0.5)
        async with httpx.AsyncClient(base_url=srv.url) as client:
            gone = await client.get(
                f"/api/streams/{stream_id}", headers={"Accept": "application/json"}
            )
            browser = await client.get(
                f"/api/streams/{stream_id}", headers={"Accept": "text/event-stream"}
            )
            cancel = await client.post(f"/api/streams/{stream_id}/cancel")
    assert gone.status_code == 404 and gone.json()["code"] == "STREAM_NOT_FOUND"
    assert browser.status_code == 204  # an EventSource stops reconnecting
    assert cancel.status_code == 404


@pytest.mark.parametrize("bad", ["nonsense", "abc:", ":1", "x:y"])
async def test_bad_last_event_id_is_422(live_server, bad: str) -> None:
    async with live_server() as srv:
        result = await chat_stream(srv.url, {"message": "hi"})
        stream_id = result.events[0].json["stream_id"]
        async with httpx.AsyncClient(base_url=srv.url) as client:
            response = await client.get(f"/api/streams/{stream_id}", headers={"Last-Event-ID": bad})
    assert response.status_code == 422
    assert response.json()["code"] == "VALIDATION_ERROR"
