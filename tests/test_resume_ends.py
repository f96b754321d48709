"""Resuming by default, and resumes that end: 204 for EventSource, JSON 404 for JSON callers.

Issue #19: with `disconnect_grace_s=0` a dropped connection cancelled the answer, and a resume
of a finished stream (or past its end) got `200` with an empty body, so a browser's
EventSource reconnected every 3 s for as long as the stream was kept.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from tests.security.conftest import open_stream
from tokenrelay.config import Settings
from tokenrelay.sse_parser import parse_sse

EVENT_STREAM = {"Accept": "text/event-stream"}
JSON = {"Accept": "application/json"}


async def finished_stream(client: httpx.AsyncClient) -> tuple[str, int]:
    """A stream run to its end: (stream_id, seq of its terminal event)."""
    response = await client.post(
        "/api/chat/stream", json={"message": "hi", "options": {"scripted": {"tokens": 3}}}
    )
    events = parse_sse(response.content)
    assert json.loads(events[-1].data)["type"] == "done"
    sid, _, last = events[-1].id.rpartition(":")
    return sid, int(last)


def test_generation_outlives_the_connection_by_default() -> None:
    assert Settings().disconnect_grace_s == 60


async def test_a_dropped_reader_resumes_to_done_with_the_default_grace(live_server) -> None:
    scripted = {"tokens": 20, "delay_ms": 30}
    body: dict[str, Any] = {"message": "hi", "options": {"scripted": scripted}}
    async with live_server() as srv, httpx.AsyncClient(base_url=srv.url, timeout=30) as client:
        meta = await open_stream(client, body)  # reads the metadata, then drops the connection
        await asyncio.sleep(0.3)
        sid = meta["stream_id"]
        response = await client.get(
            f"/api/streams/{sid}", headers={**EVENT_STREAM, "Last-Event-ID": f"{sid}:1"}
        )
    assert response.status_code == 200
    events = [json.loads(e.data) for e in parse_sse(response.content)]
    assert [e["type"] for e in events] == ["token"] * 20 + ["done"]
    assert [e["index"] for e in events[:-1]] == list(range(20))


async def test_resume_at_the_end_of_a_finished_stream_is_204(live_server) -> None:
    async with live_server() as srv, httpx.AsyncClient(base_url=srv.url) as client:
        sid, last = await finished_stream(client)
        at_end = await client.get(
            f"/api/streams/{sid}", headers={**EVENT_STREAM, "Last-Event-ID": f"{sid}:{last}"}
        )
        past_end = await client.get(
            f"/api/streams/{sid}", headers={"Last-Event-ID": f"{sid}:{last + 7}"}
        )
        as_json = await client.get(
            f"/api/streams/{sid}", headers={**JSON, "Last-Event-ID": f"{sid}:{last}"}
        )
        query = await client.get(f"/api/streams/{sid}", params={"last_event_id": f"{sid}:{last}"})
    assert at_end.status_code == 204 and at_end.content == b""
    assert past_end.status_code == 204  # no Accept preference for JSON: EventSource-style
    assert query.status_code == 204
    assert as_json.status_code == 404 and as_json.json()["code"] == "STREAM_NOT_FOUND"


async def test_resume_of_a_finished_stream_before_its_end_replays_the_rest(live_server) -> None:
    async with live_server() as srv, httpx.AsyncClient(base_url=srv.url) as client:
        sid, last = await finished_stream(client)
        response = await client.get(
            f"/api/streams/{sid}", headers={**EVENT_STREAM, "Last-Event-ID": f"{sid}:2"}
        )
        whole = await client.get(f"/api/streams/{sid}", headers=JSON)  # no id: from the start
    assert response.status_code == 200
    events = parse_sse(response.content)
    assert [e.id for e in events] == [f"{sid}:{n}" for n in range(3, last + 1)]
    assert json.loads(events[-1].data)["type"] == "done"
    assert whole.status_code == 200 and len(parse_sse(whole.content)) == last


async def test_resume_of_an_unknown_stream_is_204_or_json_404(live_server) -> None:
    async with live_server() as srv, httpx.AsyncClient(base_url=srv.url) as client:
        browser = await client.get("/api/streams/nosuchstream", headers=EVENT_STREAM)
        with_id = await client.get(
            "/api/streams/nosuchstream", headers={"Last-Event-ID": "nosuchstream:4"}
        )
        as_json = await client.get("/api/streams/nosuchstream", headers=JSON)
        chat_get = await client.get(
            "/api/chat/stream",
            params={"message": "hi", "last_event_id": "nosuchstream:4"},
            headers=EVENT_STREAM,
        )
    assert browser.status_code == 204 and with_id.status_code == 204
    assert chat_get.status_code == 204
    assert as_json.status_code == 404 and as_json.json()["code"] == "STREAM_NOT_FOUND"


async def test_eventsource_get_reconnecting_after_done_gets_204(live_server) -> None:
    async with live_server() as srv, httpx.AsyncClient(base_url=srv.url) as client:
        first = await client.get("/api/chat/stream", params={"message": "hi"}, headers=EVENT_STREAM)
        last_id = parse_sse(first.content)[-1].id
        again = await client.get(
            "/api/chat/stream",
            params={"message": "hi"},
            headers={**EVENT_STREAM, "Last-Event-ID": last_id},
        )
        as_json = await client.get(
            "/api/chat/stream", params={"message": "hi"}, headers={**JSON, "Last-Event-ID": last_id}
        )
        running = srv.app.state.services.runner.active
    assert first.status_code == 200
    assert again.status_code == 204 and again.content == b""
    assert as_json.status_code == 404 and as_json.json()["code"] == "STREAM_NOT_FOUND"
    assert running == 0  # neither reconnect started a new stream


async def test_explicit_cancel_stops_a_stream_whose_reader_left(live_server) -> None:
    body = {"message": "hi", "options": {"scripted": {"tokens": 500, "delay_ms": 20}}}
    async with live_server() as srv, httpx.AsyncClient(base_url=srv.url, timeout=30) as client:
        meta = await open_stream(client, body)
        sid = meta["stream_id"]
        assert srv.app.state.services.runner.is_running(sid)  # the grace keeps it going
        cancel = await client.post(f"/api/streams/{sid}/cancel")
        replay = await client.get(f"/api/streams/{sid}", headers=EVENT_STREAM)
    assert cancel.json()["cancelled"] is True
    last = json.loads(parse_sse(replay.content)[-1].data)
    assert last["code"] == "CANCELLED"
    assert "TOKENRELAY_" not in last["message"] + last["suggestion"]


async def test_a_disconnect_cancel_tells_the_end_user_no_server_setting(live_server) -> None:
    body = {"message": "hi", "options": {"scripted": {"tokens": 500, "delay_ms": 20}}}
    async with (
        live_server(disconnect_grace_s=0) as srv,
        httpx.AsyncClient(base_url=srv.url, timeout=30) as client,
    ):
        meta = await open_stream(client, body)
        sid = meta["stream_id"]
        for _ in range(500):
            if not srv.app.state.services.runner.is_running(sid):
                break
            await asyncio.sleep(0.02)
        replay = await client.get(f"/api/streams/{sid}", headers=JSON)
    last = json.loads(parse_sse(replay.content)[-1].data)
    assert last["code"] == "CANCELLED"
    assert "TOKENRELAY_" not in last["message"] + last["suggestion"]
    assert "TOKENRELAY_DISCONNECT_GRACE_S" in last["details"]["operator"]
