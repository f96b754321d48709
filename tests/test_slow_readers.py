"""Slow readers are bounded (issue #19): a connection that does not drain for
`write_timeout_s`, or holds more than `max_connection_buffer_bytes` unsent, is closed; the
stream goes on and resumes exactly from the last event the client got. Open readings hold a
slot of `max_open_streams`, resumes of finished streams included.

Real uvicorn over real sockets; the stalled client is a raw socket with a small receive
buffer that reads nothing until the server has closed it (what it then reads is what the
kernel had taken before the close)."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Callable
from typing import Any

import httpx

from tests.helpers import Frame, events_of, parse_frames, stream
from tokenrelay.delivery.reader import open_streams, reader_slots

REPLY = ("word " * 200_001)[:1_000_000]  # a 1 MB answer ...
TOKENS = 20_000  # ... in 20,000 tokens: about 3 MB of frames
BIG = {"message": "m", "options": {"scripted": {"reply": REPLY, "tokens": TOKENS}}}
SETTINGS: dict[str, Any] = {
    "max_tokens": 32768,  # the scripted reply is cut at max_tokens pieces
    "max_body_bytes": 2_000_000,
    "disconnect_grace_s": 60.0,  # a closed slow reader's stream goes on
}


def open_raw(url: str, request: bytes, rcvbuf: int = 4096) -> socket.socket:
    """A client that sends `request` and does not read (a 4 KB receive window)."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # before connect: the window
    sock.connect((host, int(port)))
    sock.sendall(request)
    return sock


def post_request(url: str, body: dict[str, Any]) -> bytes:
    data = json.dumps(body).encode()
    return (
        f"POST /api/chat/stream HTTP/1.1\r\nHost: {url.removeprefix('http://')}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    ).encode() + data


def resume_request(url: str, stream_id: str) -> bytes:
    return (
        f"GET /api/streams/{stream_id} HTTP/1.1\r\nHost: {url.removeprefix('http://')}\r\n\r\n"
    ).encode()


def started(sock: socket.socket) -> None:
    """Wait for the response to begin (its reading is open by then), reading nothing."""
    sock.settimeout(60)
    assert sock.recv(1, socket.MSG_PEEK)


def read_to_end(sock: socket.socket, timeout: float = 60) -> bytes:
    """Everything the server sent before it closed the connection."""
    sock.settimeout(timeout)
    parts = []
    while chunk := sock.recv(1 << 16):
        parts.append(chunk)
    sock.close()
    return b"".join(parts)


def frames_received(raw: bytes) -> list[Frame]:
    """The whole SSE frames of a chunked response cut off anywhere."""
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    data = bytearray()
    while body:
        size_line, sep, rest = body.partition(b"\r\n")
        if not sep:
            break
        size = int(size_line, 16)
        if size == 0:
            break
        data += rest[:size]  # all of it, or the part that came
        body = rest[size + 2 :]
    text = bytes(data).decode("utf-8", errors="ignore")
    return parse_frames(text[: text.rfind("\n\n") + 2])


async def until(condition: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def no_open_readings(app: Any) -> Callable[[], bool]:
    slots = reader_slots(app.state.services.runner)
    return lambda: slots.count == 0 and not slots.riders


def assert_whole_answer(events: list[Frame]) -> None:
    """Every event once, in order, and one terminal `done` at the end."""
    seqs = [int(str(e.id).rsplit(":", 1)[1]) for e in events]
    assert seqs == list(range(1, len(events) + 1))
    types = [e.type for e in events]
    assert types[-1] == "done" and types.count("done") == 1 and "error" not in types
    tokens = [e.json for e in events if e.type == "token"]
    assert [t["index"] for t in tokens] == list(range(TOKENS))
    assert "".join(t["content"] for t in tokens) == REPLY


async def test_a_stalled_reader_is_closed_after_write_timeout_and_resumes_exactly(
    live_server: Any,
) -> None:
    async with live_server(write_timeout_s=1.0, **SETTINGS) as srv:
        runner = srv.app.state.services.runner
        sock = await asyncio.to_thread(open_raw, srv.url, post_request(srv.url, BIG))
        slots = reader_slots(runner)
        await asyncio.to_thread(started, sock)
        await until(no_open_readings(srv.app))  # closed by the server, not by the client
        got = events_of(frames_received(await asyncio.to_thread(read_to_end, sock)))
        assert got and got[-1].type == "token"  # the end came without a terminal event
        stream_id, last = str(got[-1].id).rsplit(":", 1)
        resumed = await stream(
            srv.url, "GET", f"/api/streams/{stream_id}", headers={"Last-Event-ID": got[-1].id}
        )
        assert resumed.response.status_code == 200
        assert int(str(resumed.events[0].id).rsplit(":", 1)[1]) == int(last) + 1
        assert_whole_answer(got + resumed.events)
        # the reading let go once: nothing is left counted (detach, subscription, slot)
        await until(lambda: open_streams(runner) == 0)
        assert slots.count == 0 and not slots.riders


async def test_a_reader_over_the_buffer_bound_is_closed(live_server: Any) -> None:
    # the timeout is far away: what closes it is the bound
    async with live_server(write_timeout_s=600, max_connection_buffer_bytes=1, **SETTINGS) as srv:
        sock = await asyncio.to_thread(open_raw, srv.url, post_request(srv.url, BIG))
        await asyncio.to_thread(started, sock)
        await until(no_open_readings(srv.app))
        got = events_of(frames_received(await asyncio.to_thread(read_to_end, sock)))
        assert got and got[-1].type == "token"
        resumed = await stream(
            srv.url,
            "GET",
            f"/api/streams/{str(got[-1].id).rsplit(':', 1)[0]}",
            headers={"Last-Event-ID": got[-1].id},
        )
        assert_whole_answer(got + resumed.events)


async def test_a_fast_reader_is_never_closed(live_server: Any) -> None:
    async with live_server(write_timeout_s=1.0, **SETTINGS) as srv:
        result = await stream(srv.url, "POST", "/api/chat/stream", json=BIG)
        assert_whole_answer(result.events)


async def test_a_slow_reader_that_reads_is_never_closed(live_server: Any) -> None:
    """Sips of 64 KB ten times a second: its writes are paused most of the time, and it
    outlasts the timeout several times over, but it moves at every look."""
    async with live_server(write_timeout_s=1.0, **SETTINGS) as srv:
        request = post_request(srv.url, BIG)
        sock = await asyncio.to_thread(open_raw, srv.url, request, 16384)
        sock.setblocking(False)
        parts: list[bytes] = []
        ended = False
        deadline = time.monotonic() + 120
        while not ended and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            sip = 0
            while sip < 64 * 1024:
                try:
                    chunk = sock.recv(64 * 1024 - sip)
                except BlockingIOError:
                    break
                if not chunk:
                    ended = True
                    break
                parts.append(chunk)
                sip += len(chunk)
            if b"\r\n0\r\n\r\n" in b"".join(parts[-2:]):  # the end of the chunked body
                break
        sock.close()
        assert_whole_answer(events_of(frames_received(b"".join(parts))))


async def test_a_resume_of_a_finished_stream_holds_a_slot_while_open(live_server: Any) -> None:
    async with live_server(max_open_streams=1, write_timeout_s=600, **SETTINGS) as srv:
        first = await stream(srv.url, "POST", "/api/chat/stream", json=BIG)
        stream_id = str(first.events[0].id).rsplit(":", 1)[0]
        runner = srv.app.state.services.runner
        await until(lambda: open_streams(runner) == 0)
        sock = await asyncio.to_thread(open_raw, srv.url, resume_request(srv.url, stream_id))
        await until(lambda: open_streams(runner) == 1)  # the open resume holds the one slot
        async with httpx.AsyncClient(base_url=srv.url, timeout=30) as client:
            new = await client.post("/api/chat/stream", json={"message": "hi"})
            assert new.status_code == 503 and new.json()["code"] == "BACKEND_UNAVAILABLE"
            again = await client.get(
                f"/api/streams/{stream_id}", headers={"Last-Event-ID": f"{stream_id}:5"}
            )
            assert again.status_code == 503 and again.json()["code"] == "BACKEND_UNAVAILABLE"
            sock.close()  # the client goes away: its slot comes back
            await until(lambda: open_streams(runner) == 0)
            after = await client.post("/api/chat/stream", json={"message": "hi"})
            assert after.status_code == 200


async def test_a_stalled_reader_of_a_finished_stream_holds_a_slot_until_closed(
    live_server: Any,
) -> None:
    """The issue's case: readers of finished streams did not count toward the cap."""
    async with live_server(max_open_streams=1, write_timeout_s=8, **SETTINGS) as srv:
        runner = srv.app.state.services.runner
        sock = await asyncio.to_thread(open_raw, srv.url, post_request(srv.url, BIG))
        await asyncio.to_thread(started, sock)
        await until(lambda: runner.active == 0 and open_streams(runner) == 1)
        async with httpx.AsyncClient(base_url=srv.url, timeout=30) as client:
            refused = await client.post("/api/chat/stream", json={"message": "hi"})
            assert refused.status_code == 503
            await until(lambda: open_streams(runner) == 0)  # closed: the slot comes back
            after = await client.post("/api/chat/stream", json={"message": "hi"})
            assert after.status_code == 200
        sock.close()


async def test_a_replay_of_a_finished_stream_holds_a_per_client_slot_while_open(
    live_server: Any,
) -> None:
    """Open readers count toward `max_streams_per_client` too: a replay of a finished stream
    holds the client's slot while it is open, and gives it back when the client leaves."""
    async with live_server(max_streams_per_client=1, write_timeout_s=600, **SETTINGS) as srv:
        first = await stream(srv.url, "POST", "/api/chat/stream", json=BIG)
        stream_id = str(first.events[0].id).rsplit(":", 1)[0]
        runner = srv.app.state.services.runner
        await until(lambda: open_streams(runner) == 0)
        sock = await asyncio.to_thread(open_raw, srv.url, resume_request(srv.url, stream_id))
        await until(lambda: open_streams(runner) == 1)
        async with httpx.AsyncClient(base_url=srv.url, timeout=30) as client:
            new = await client.post("/api/chat/stream", json={"message": "hi"})
            assert new.status_code == 429 and new.json()["code"] == "RATE_LIMIT"
            sock.close()  # the client goes away: its slot comes back
            await until(lambda: open_streams(runner) == 0)
            for _ in range(100):  # the release runs just after the reading ends
                after = await client.post("/api/chat/stream", json={"message": "hi"})
                if after.status_code == 200:
                    break
                await asyncio.sleep(0.05)
            assert after.status_code == 200


async def test_a_client_resuming_its_own_running_stream_is_never_refused_by_its_cap(
    live_server: Any,
) -> None:
    """The resume rides on its stream's slot: with a cap of one stream per client, the client
    that lost its connection still gets its answer back."""
    async with live_server(max_streams_per_client=1, **SETTINGS) as srv:
        body = {"message": "hi", "options": {"scripted": {"tokens": 40, "delay_ms": 50}}}
        async with httpx.AsyncClient(base_url=srv.url, timeout=30) as client:
            async with client.stream("POST", "/api/chat/stream", json=body) as response:
                async for line in response.aiter_lines():
                    if line.startswith("id: "):
                        last = line[4:]
                        break
            stream_id = last.rsplit(":", 1)[0]
            resumed = await client.get(f"/api/streams/{stream_id}", headers={"Last-Event-ID": last})
            assert resumed.status_code == 200
            assert "event: done" in resumed.text
