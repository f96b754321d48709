"""CPU per token of tokenrelay's own path, in one process, without HTTP or a load generator.

N streams x T tokens through the real runner, chat pipeline, stream log and SSE response (with
the server's GC tuning), the response's `send` only counted. Less noisy than the relay
benchmark, for A/B comparisons of hot-path changes; `--profile` prints cProfile's top entries.
The counting `send` is not uvicorn's, so the direct writes of delivery/direct_write.py are not
taken here: readers are woken for every event.

    .venv/bin/python -m bench.relay.inprocess --streams 300 --tokens 100 --delay-ms 0.001
    .venv/bin/python -m bench.relay.inprocess --streams 2000 --tokens 1     # per-stream cost
    .venv/bin/python -m bench.relay.inprocess --app --delay-ms 0           # + HTTP app layers
    .venv/bin/python -m bench.relay.inprocess --app --naive --delay-ms 20  # the naive app

`--app` sends each stream through the whole ASGI app (`POST /api/chat/stream`: our
middleware, the request model, the route) instead of starting the pipeline directly; only the
HTTP server is missing. Under `valgrind --tool=callgrind` its instruction count repeats to
within a fraction of a percent, which the timed runs on a shared machine do not.

A delay > 0 makes every token its own loop turn (as paced streams are); 0 lets the provider
produce a whole answer at once (as unpaced streams do).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import tempfile
import time
import uuid
from functools import partial
from typing import Any

import orjson

from tokenrelay.config import Settings
from tokenrelay.pipelines.chat import ChatTurn, chat_pipeline
from tokenrelay.server.app import create_app
from tokenrelay.server.serve import tune_gc, tune_gil
from tokenrelay.server.sse import EventStreamResponse
from tokenrelay.services import Services


async def run(
    streams: int,
    tokens: int,
    delay_ms: float,
    profile: bool,
    app_mode: bool,
    sort: str = "tottime",
    rows: int = 25,
    naive: bool = False,
    uvicorn_mode: bool = False,
) -> None:
    settings = Settings(provider="scripted", data_dir=tempfile.mkdtemp())
    services = await Services.open(settings)
    app: Any = create_app(settings)
    app.state.services = services
    if naive:
        from bench.relay.baselines.naive_app import app
    sent = 0

    async def send(message: Any) -> None:
        nonlocal sent
        sent += 1

    async def receive() -> Any:
        await asyncio.get_running_loop().create_future()  # the client never leaves

    scripted = {"tokens": tokens, "delay_ms": delay_ms}
    request = orjson.dumps({"message": "bench", "options": {"scripted": scripted}})

    async def through_app() -> None:
        body_sent = False

        async def receive_body() -> Any:
            nonlocal body_sent
            if not body_sent:
                body_sent = True
                return {"type": "http.request", "body": request, "more_body": False}
            await asyncio.get_running_loop().create_future()

        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/api/chat/stream",
            "raw_path": b"/api/chat/stream",
            "query_string": b"",
            "root_path": "",
            "headers": [
                (b"host", b"127.0.0.1"),
                (b"content-type", b"application/json"),
                (b"content-length", str(len(request)).encode()),
            ],
            "client": ("127.0.0.1", 40000),
            "server": ("127.0.0.1", 8000),
            "state": {},
        }
        await app(scope, receive_body, send)

    through_uvicorn = _uvicorn_driver(app, request) if uvicorn_mode else None

    async def one() -> None:
        if through_uvicorn is not None:
            await through_uvicorn()
            return
        if app_mode:
            await through_app()
            return
        stream_id = uuid.uuid4().hex
        turn = ChatTurn(
            stream_id=stream_id,
            trace_id="bench",
            message="bench",
            provider="scripted",
            extra={"scripted": scripted},
        )
        await services.runner.start(stream_id, partial(chat_pipeline, services, turn))
        await EventStreamResponse(services, stream_id)({"type": "http"}, receive, send)

    try:
        await asyncio.gather(*(one() for _ in range(20)))  # warm up
        profiler = cProfile.Profile() if profile else None
        wall, cpu = time.perf_counter(), time.process_time()
        if profiler is not None:
            profiler.enable()
        await asyncio.gather(*(one() for _ in range(streams)))
        if profiler is not None:
            profiler.disable()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        await services.aclose()
    per_token = cpu / (streams * tokens) * 1e6
    print(
        f"{streams} streams x {tokens} tokens (delay {delay_ms} ms): {per_token:.2f} us CPU per"
        f" token, {cpu / streams * 1e6:.0f} us per stream, wall {wall:.2f} s"
    )
    if profiler is not None:
        pstats.Stats(profiler).sort_stats(sort).print_stats(rows)


class _Transport(asyncio.Transport):
    """A socket that takes every write and ends the stream at the chunked body's end."""

    def __init__(self, done: asyncio.Future[None]) -> None:
        super().__init__()
        self._done = done
        self._closing = False
        self._protocol: Any = None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 40000)}.get(
            name, default
        )

    def write(self, data: Any) -> None:
        if bytes(data).endswith(b"0\r\n\r\n") and not self._done.done():
            self._done.set_result(None)

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if not self._closing:
            self._closing = True
            if not self._done.done():
                self._done.set_result(None)

    def set_protocol(self, protocol: Any) -> None:
        self._protocol = protocol

    def get_protocol(self) -> Any:
        return self._protocol

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def _uvicorn_driver(app: Any, request_body: bytes) -> Any:
    """Each stream through uvicorn's own httptools protocol (as `tokenrelay serve` runs it),
    on a transport that only takes the bytes: everything but the kernel's socket work."""
    import uvicorn
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    from uvicorn.server import ServerState

    config = uvicorn.Config(app, http="httptools", lifespan="off", access_log=False)
    config.load()
    state = ServerState()
    head = (
        "POST /api/chat/stream HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n"
        "Accept: text/event-stream\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(request_body)}\r\n\r\n"
    ).encode()

    async def one() -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        transport = _Transport(done)
        protocol = HttpToolsProtocol(config=config, server_state=state, app_state={})
        transport.set_protocol(protocol)  # as the loop's transports know theirs
        protocol.connection_made(transport)
        protocol.data_received(head + request_body)
        await done
        protocol.connection_lost(None)

    return one


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--streams", type=int, default=300)
    p.add_argument("--tokens", type=int, default=100)
    p.add_argument("--delay-ms", type=float, default=0.001)
    p.add_argument("--profile", action="store_true")
    p.add_argument("--app", action="store_true", help="through the ASGI app (see above)")
    p.add_argument(
        "--naive", action="store_true", help="with --app: the naive baseline's app instead"
    )
    p.add_argument(
        "--uvicorn", action="store_true", help="with --app: through uvicorn's HTTP protocol"
    )
    p.add_argument("--sort", default="tottime", help="cProfile order (tottime, cumulative)")
    p.add_argument("--rows", type=int, default=25)
    args = p.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    tune_gc(Settings().gc_threshold)  # as `tokenrelay serve` does
    tune_gil()
    asyncio.run(
        run(
            args.streams,
            args.tokens,
            args.delay_ms,
            args.profile,
            args.app,
            args.sort,
            args.rows,
            naive=args.naive,
            uvicorn_mode=args.uvicorn,
        )
    )


if __name__ == "__main__":
    main()
