"""`tokenrelay serve` accepts many waiting connections at each wake-up (server/listener.py):
under uvloop a server accepts one per loop turn, and at 1,000 streams opened in a second the
last ones waited hundreds of milliseconds in the accept queue (findings item 35). At most
`ACCEPT_BATCH` at once, so that a burst cannot stall the open streams (findings item 41)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import inspect
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any, cast

import httpx
import pytest
import uvicorn

from tokenrelay.server import listener as listener_module
from tokenrelay.server import uvicorn_startup
from tokenrelay.server.listener import ACCEPT_BATCH, GreedyListener, bind
from tokenrelay.server.serve import DrainingServer

BURST = 64


class _Counting(asyncio.Protocol):
    made: list[asyncio.BaseTransport]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.made.append(transport)


def _counting() -> tuple[Callable[[], asyncio.Protocol], list[asyncio.BaseTransport]]:
    made: list[asyncio.BaseTransport] = []

    def factory() -> asyncio.Protocol:
        proto = _Counting()
        proto.made = made
        return proto

    return factory, made


async def _turns_to_take_a_burst(burst: int = BURST, batch: int = 1024) -> int:
    """Loop turns from a listener's start until a burst already waiting is all connected."""
    [sock] = bind("127.0.0.1", 0, 1024)
    port = sock.getsockname()[1]
    # blocking connects complete in the kernel: the burst waits in the accept queue
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(burst)]
    factory, made = _counting()
    listener = GreedyListener(sock, factory, batch=batch)
    try:
        turns = 0
        while len(made) < burst and turns < 50:
            await asyncio.sleep(0)
            turns += 1
        assert len(made) == burst
        return turns
    finally:
        listener.close()
        await listener.wait_closed()
        for transport in made:
            transport.close()
        for client in clients:
            client.close()


async def test_a_waiting_burst_is_taken_in_one_wake_up() -> None:
    # one turn to accept them all, a few for the loop to call connection_made: not one
    # turn per connection, as uvloop's own server takes
    assert await _turns_to_take_a_burst() <= 5


def test_the_same_under_uvloop() -> None:
    uvloop = pytest.importorskip("uvloop")
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert runner.run(_turns_to_take_a_burst()) <= 5


def test_a_burst_larger_than_a_batch_is_taken_over_the_next_turns() -> None:
    """The socket wakes the loop again while connections wait: a burst of four batches is
    taken in four wake-ups, not left in the queue until a new client arrives."""
    uvloop = pytest.importorskip("uvloop")
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        turns = runner.run(_turns_to_take_a_burst(4 * ACCEPT_BATCH, ACCEPT_BATCH))
    assert 4 <= turns <= 12


class _OutOfFiles:
    """A listening socket whose accept fails as it does in a process out of descriptors."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.accepts = 0

    def fileno(self) -> int:
        return self._sock.fileno()

    def setblocking(self, flag: bool) -> None:
        self._sock.setblocking(flag)

    def accept(self) -> tuple[socket.socket, Any]:
        self.accepts += 1
        raise OSError(errno.EMFILE, "Too many open files")

    def close(self) -> None:
        self._sock.close()


async def test_out_of_descriptors_pauses_accepting_and_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(listener_module, "PAUSE_S", 0.05)
    [sock] = bind("127.0.0.1", 0, 16)
    client = socket.create_connection(sock.getsockname())  # keeps the socket readable
    failing = _OutOfFiles(sock)
    factory, made = _counting()
    with caplog.at_level(logging.ERROR, logger="tokenrelay.server"):
        listener = GreedyListener(cast(socket.socket, failing), factory, batch=16)
        try:
            for _ in range(20):
                await asyncio.sleep(0)
            # not a busy loop on a socket that stays readable: one try, then a pause
            assert failing.accepts == 1
            assert "ulimit -n" in caplog.text
            for _ in range(200):  # the pause is 0.05 s; a busy machine may take longer
                if failing.accepts >= 2:
                    break
                await asyncio.sleep(0.05)
            assert failing.accepts >= 2  # and it tries again after the pause
            assert made == []
        finally:
            listener.close()
            client.close()


async def _serving(server: uvicorn.Server) -> asyncio.Task[None]:
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started or task.done():
            break
        await asyncio.sleep(0.01)
    return task


async def _hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello"})


def _server(port: int) -> DrainingServer:
    app = cast(Callable[..., Awaitable[None]], _hello)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="error")
    return DrainingServer(config)


async def _hello_on(port: int) -> str:
    async with httpx.AsyncClient() as client:
        return (await client.get(f"http://127.0.0.1:{port}/")).text


async def test_serve_listens_with_it_and_stops_listening_on_shutdown() -> None:
    server = _server(0)
    task = await _serving(server)
    try:
        assert server.started
        [listening] = server.servers
        assert isinstance(listening, GreedyListener)
        port = listening.sockets[0].getsockname()[1]
        assert await _hello_on(port) == "hello"
    finally:
        server.should_exit = True
        await task
    with pytest.raises(OSError):  # the port is closed
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_a_port_in_use_is_a_start_up_failure(capfd: pytest.CaptureFixture[str]) -> None:
    with contextlib.closing(socket.socket()) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        server = _server(taken.getsockname()[1])
        with pytest.raises(SystemExit) as exited:
            server.run()
    assert exited.value.code == 3  # as uvicorn's own start-up exits
    assert "in use" in capfd.readouterr().err  # uvicorn's log says why


def test_bind_takes_every_address_of_the_host() -> None:
    everywhere = bind("", 0, 8)  # "" is every interface, as with loop.create_server
    try:
        assert "0.0.0.0" in {sock.getsockname()[0] for sock in everywhere}
    finally:
        for sock in everywhere:
            sock.close()
    [loopback] = bind("127.0.0.1", 0, 8)
    with loopback:
        assert loopback.getsockname()[0] == "127.0.0.1"


async def test_uvicorn_still_has_what_our_start_up_reaches_into() -> None:
    """`serve`'s start-up runs on uvicorn's internals (server/uvicorn_startup.py): if an
    upgrade renames one, this fails here instead of `serve` quietly falling back to
    uvicorn's one-connection-per-turn accept."""
    assert "sockets" in inspect.signature(uvicorn.Server.startup).parameters
    assert uvicorn_startup.STARTUP_FAILURE == 3
    server = _server(0)
    task = await _serving(server)
    try:
        assert server.started
        assert uvicorn_startup.missing(server) == []
        assert all(isinstance(s, GreedyListener) for s in server.servers)
    finally:
        server.should_exit = True
        await task


async def test_a_uvicorn_without_what_start_up_needs_serves_with_its_own_listener(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """A protocol class that does not name the arguments our start-up passes (as a uvicorn
    that changed them would) gets uvicorn's own start-up, with a warning, and still serves."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class Unnamed(HttpToolsProtocol):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)

    app = cast(Callable[..., Awaitable[None]], _hello)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, lifespan="off", log_level="warning", http=Unnamed
    )
    server = DrainingServer(config)
    task = await _serving(server)
    try:
        assert server.started
        [listening] = server.servers
        assert not isinstance(listening, GreedyListener)
        assert "lacks Unnamed(config=)" in capfd.readouterr().err  # uvicorn's log says why
        port = listening.sockets[0].getsockname()[1]
        assert await _hello_on(port) == "hello"
    finally:
        server.should_exit = True
        await task
