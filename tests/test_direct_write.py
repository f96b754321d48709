"""The SSE response's direct writes (delivery/direct_write.py): uvicorn lends its transport,
and the log pushes to a waiting reader only while it accepts (a refusal, e.g. on paused
writes, wakes the reader, which then sends through ASGI). Exactly-once delivery through the
direct path under cuts and resumes is tests/test_resume.py's."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import uvicorn

from tests.conftest import free_port
from tests.helpers import chat_stream
from tokenrelay.delivery.direct_write import direct_writer
from tokenrelay.events import token_event
from tokenrelay.providers.scripted import default_reply, split_pieces
from tokenrelay.streams.log import MemoryStreamLog


async def get_from_uvicorn(app: Any) -> httpx.Response:
    """`GET /` from a bare ASGI `app` under a real uvicorn (httptools), then stop it."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", http="httptools")
    )
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        async with httpx.AsyncClient() as client:
            return await client.get(f"http://127.0.0.1:{port}/")
    finally:
        server.should_exit = True
        await task


async def test_uvicorn_lends_its_transport_to_a_chunked_response() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        writer = direct_writer(send)
        if writer is not None and writer.writable and writer.write(b"direct "):
            await send({"type": "http.response.body", "body": b"then asgi", "more_body": False})
        else:
            await send({"type": "http.response.body", "body": b"no bypass", "more_body": False})

    response = await get_from_uvicorn(app)
    # if uvicorn renames what the bypass reads, this fails instead of the relay slowing down
    assert response.text == "direct then asgi"


async def test_the_log_pushes_to_a_waiting_reader_until_it_refuses() -> None:
    log = MemoryStreamLog()
    await log.create("s", owner=None, session_id=None)
    sub = await log.subscribe("s")
    taken: list[int] = []
    accept = True

    def push(seq: int, kind: str) -> bool:
        if accept:
            taken.append(seq)
        return accept

    sub.set_push(push)
    waiter = sub.waiter()
    log.emit("s", token_event("a", 0))
    log.emit("s", token_event("b", 1))
    assert taken == [1, 2] and not waiter.done()  # delivered without waking the reader
    accept = False  # e.g. the connection's writes are paused
    log.emit("s", token_event("c", 2))
    assert waiter.done() and taken == [1, 2]  # the reader wakes and takes seq 3 itself
    assert [e.seq for e in sub.take(2)] == [3]
    log.emit("s", token_event("d", 3))  # out of push mode now: no more pushes
    assert taken == [1, 2]
    sub.close()


async def test_uvicorn_tells_an_idle_stream_of_a_disconnect_without_a_listener_task(
    live_server,
) -> None:
    """An idle stream writes nothing, so only the connection's own event can tell it that
    the client left (`watch_disconnect`); no task waits on `receive()` meanwhile."""
    async with live_server(disconnect_grace_s=0) as srv:  # a disconnect cancels at once
        services = srv.app.state.services
        provider = services.providers.get("scripted")
        body = {"message": "q", "options": {"scripted": {"stall_after": 0}}}
        async with (
            httpx.AsyncClient(base_url=srv.url) as client,
            client.stream("POST", "/api/chat/stream", json=body) as response,
        ):
            async for chunk in response.aiter_text():
                if "event: metadata" in chunk:
                    break
            listening = [
                t
                for t in asyncio.all_tasks()
                if getattr(t.get_coro(), "__qualname__", "") == "EventStreamResponse._listen"
            ]
            assert listening == []
            assert services.runner.active == 1
        async with asyncio.timeout(10):  # leaving the block closed the connection
            while provider.stats.cancelled == 0 or services.runner.active:
                await asyncio.sleep(0.01)


async def test_the_watched_event_still_wakes_a_receive_call() -> None:
    """Whoever still awaits `receive()` on a watched request is woken as before."""
    from tokenrelay.delivery.direct_write import _NotifyingEvent

    calls: list[str] = []
    event = _NotifyingEvent(lambda: calls.append("set"))
    waiter = asyncio.create_task(event.wait())
    await asyncio.sleep(0)
    event.set()
    assert await asyncio.wait_for(waiter, 5) is True
    assert calls == ["set"]
    assert event._waiters == []


async def test_a_cancelled_wait_on_the_watched_event_leaves_no_waiter() -> None:
    """A `receive()` cancelled while it waits takes its waiter with it; `clear` makes the
    next wait block again, as an `asyncio.Event` does."""
    from tokenrelay.delivery.direct_write import _NotifyingEvent

    event = _NotifyingEvent(lambda: None)
    waiter = asyncio.create_task(event.wait())
    await asyncio.sleep(0)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    assert event._waiters == [] and not event.is_set()
    event.set()
    assert event.is_set() and await event.wait() is True
    event.clear()
    assert not event.is_set()


async def test_streams_whose_tokens_fall_due_together_each_arrive_once_in_order(
    live_server,
) -> None:
    """Pushed tokens of many streams are written by one flush per loop turn for all of them
    (server/sse.py `_FlushQueue`): each stream still gets each of its tokens once, in order,
    with its own ids, and its own text."""
    tokens = 40

    async def one(url: str, k: int) -> None:
        body = {
            "message": f"stream {k}",
            "options": {"scripted": {"tokens": tokens, "delay_ms": 2}},
        }
        result = await chat_stream(url, body)
        events = result.events
        stream_id = events[0].json["stream_id"]
        assert [f.id for f in events] == [f"{stream_id}:{i}" for i in range(1, tokens + 3)]
        assert result.types == ["metadata", *["token"] * tokens, "done"]
        assert result.text == "".join(split_pieces(default_reply(f"stream {k}"), tokens))

    async with live_server() as srv:
        await asyncio.gather(*(one(srv.url, k) for k in range(40)))


async def test_a_request_pipelined_behind_a_stream_is_still_answered(live_server) -> None:
    """A request sent behind an open stream on the same connection (pipelined) is answered
    when the stream ends: the direct writes leave uvicorn's connection as it was."""
    body = json.dumps({"message": "q", "options": {"scripted": {"tokens": 5, "delay_ms": 20}}})
    async with live_server() as srv:
        port = int(srv.url.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(
                b"POST /api/chat/stream HTTP/1.1\r\nHost: t\r\nContent-Type: application/json"
                b"\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body.encode())
            )
            raw = b""
            async with asyncio.timeout(10):
                while b"event: metadata" not in raw:
                    raw += await reader.read(65536)
                writer.write(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
                while raw.count(b"HTTP/1.1 200") < 2 or not raw.endswith(b"}"):
                    chunk = await reader.read(65536)
                    assert chunk, raw
                    raw += chunk
        finally:
            writer.close()
    stream, _, health = raw.partition(b"0\r\n\r\nHTTP/1.1 200")
    assert stream.count(b"event: token") == 5 and b"event: done" in stream
    assert json.loads(health.rsplit(b"\r\n\r\n", 1)[1])["status"] == "ok"


async def test_a_transport_that_cannot_tell_its_buffer_has_a_writer_that_holds_nothing() -> None:
    """On a transport of asyncio's base class, whose `get_write_buffer_size` raises, the
    direct writer says it buffers nothing and the response goes on (a fault found by the
    in-process bench: every stream's end raised NotImplementedError)."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    from uvicorn.server import ServerState

    written: list[bytes] = []
    buffered: list[int] = []

    class Transport(asyncio.Transport):
        def get_extra_info(self, name: str, default: Any = None) -> Any:
            return {"sockname": ("127.0.0.1", 1), "peername": ("127.0.0.1", 2)}.get(name)

        def write(self, data: Any) -> None:
            written.append(bytes(data))

        def is_closing(self) -> bool:
            return False

        def close(self) -> None:
            pass

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        writer = direct_writer(send)
        buffered.append(writer.buffered() if writer is not None else -1)
        await send({"type": "http.response.body", "body": b"still here", "more_body": False})

    config = uvicorn.Config(app, http="httptools", lifespan="off", access_log=False)
    config.load()
    protocol = HttpToolsProtocol(config=config, server_state=ServerState(), app_state={})
    protocol.connection_made(Transport())
    protocol.data_received(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    async with asyncio.timeout(5):
        while not any(b"still here" in w for w in written):
            await asyncio.sleep(0.01)
    protocol.connection_lost(None)
    assert buffered == [0]
