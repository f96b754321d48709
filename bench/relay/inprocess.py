"""CPU per token of tokenrelay's own path, in one process, without HTTP or a load generator.

N streams x T tokens through the real runner, chat pipeline, stream log and SSE response (with
the server's GC tuning), the response's `send` only counted. Less noisy than the relay
benchmark, for A/B comparisons of hot-path changes; `--profile` prints cProfile's top entries.
The counting `send` is not uvicorn's, so the direct writes of server/direct_write.py are not
taken here: readers are woken for every event.

    .venv/bin/python -m bench.relay.inprocess --streams 300 --tokens 100 --delay-ms 0.001
    .venv/bin/python -m bench.relay.inprocess --streams 2000 --tokens 1     # per-stream cost

A delay > 0 makes every token its own loop turn (as paced streams are); 0 lets the provider
produce a whole answer at once (as unpaced streams do).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import pstats
import tempfile
import time
import uuid
from typing import Any

from tokenrelay.config import Settings
from tokenrelay.pipelines.chat import ChatTurn, chat_pipeline
from tokenrelay.server.sse import EventStreamResponse
from tokenrelay.services import Services


async def run(streams: int, tokens: int, delay_ms: float, profile: bool) -> None:
    services = await Services.open(Settings(provider="scripted", data_dir=tempfile.mkdtemp()))
    sent = 0

    async def send(message: Any) -> None:
        nonlocal sent
        sent += 1

    async def receive() -> Any:
        await asyncio.get_running_loop().create_future()  # the client never leaves

    async def one() -> None:
        stream_id = uuid.uuid4().hex
        scripted = {"tokens": tokens, "delay_ms": delay_ms}
        turn = ChatTurn(
            stream_id=stream_id,
            trace_id="bench",
            message="bench",
            provider="scripted",
            extra={"scripted": scripted},
        )
        await services.runner.start(stream_id, chat_pipeline(services, turn))
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
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--streams", type=int, default=300)
    p.add_argument("--tokens", type=int, default=100)
    p.add_argument("--delay-ms", type=float, default=0.001)
    p.add_argument("--profile", action="store_true")
    args = p.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)  # as `tokenrelay serve` (server/serve.py: tune_gc)
    asyncio.run(run(args.streams, args.tokens, args.delay_ms, args.profile))


if __name__ == "__main__":
    main()
