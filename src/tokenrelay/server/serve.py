"""Running the app under uvicorn, with a drain on SIGTERM (see docs/deployment.md)."""

from __future__ import annotations

import asyncio
import gc
import socket
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

import uvicorn

from tokenrelay.config import Settings
from tokenrelay.server import uvicorn_startup
from tokenrelay.server.app import create_app
from tokenrelay.server.listener import ACCEPT_BATCH, GreedyListener, bind


class DrainingServer(uvicorn.Server):
    """On SIGTERM/SIGINT, first tell the app to drain, then let uvicorn shut down.

    Draining refuses new streams (503, retryable) and, with a shared log, lets clients resume
    on another replica while this one finishes generating for `shutdown_grace_s`.

    On a host and port it listens with `GreedyListener` (server/listener.py), which takes
    up to 32 waiting connections at each wake-up, where uvloop would take one per loop turn.
    """

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        app = self.config.loaded_app
        services = getattr(getattr(getattr(app, "app", app), "state", None), "services", None)
        loop = getattr(self, "_tokenrelay_loop", None)
        if services is not None and loop is not None:
            loop.call_soon_threadsafe(services.begin_drain)
        super().handle_exit(sig, frame)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self._tokenrelay_loop = asyncio.get_running_loop()
        config = self.config
        if sockets is not None or config.uds or config.fd is not None or config.ssl:
            await super().startup(sockets=sockets)
            return
        await uvicorn_startup.startup(self, _greedy(config.host, config.port, config.backlog))


def _greedy(host: str, port: int, backlog: int) -> uvicorn_startup.Listen:
    """Listening on `host`:`port` with `GreedyListener`s, for `uvicorn_startup.startup`."""

    def listen(
        protocol: Callable[[], asyncio.Protocol],
    ) -> tuple[list[socket.socket], list[Any]]:
        listening = bind(host, port, backlog)
        # uvicorn calls close() and wait_closed() on its servers, which is all a listener has
        return listening, [GreedyListener(s, protocol, batch=ACCEPT_BATCH) for s in listening]

    return listen


OLDER_EVERY = 1_000  # young collections per collection of the middle generation (Python: 10)
OLDEST_EVERY = 5  # middle-generation collections per full one (Python: 10)


def tune_gc(threshold: int) -> None:
    """Collect less often, and never scan what start-up made.

    Thousands of open streams keep many small objects alive, and with Python's default
    (a young collection every 700 allocations) the collector's walks over them were the
    largest single cost of the relay under load: with this tuning the relay benchmark's
    throughput went up and its p99 inter-token gap down (docs/benchmarks.md). Streams free
    their objects by reference counting; the collector is only needed for cycles, which stay
    rare.

    Not much rarer, though: a young collection stops every stream at once, for a time that
    grows with the threshold. A very high threshold put one long collection, and so one long
    gap, into every open stream (the paced p99); a moderate one keeps each collection short
    and all of them together took less time (docs/benchmarks.md).

    The older generations are what must be rare: a collection of the middle one walks every
    object of every open stream, the longest pauses the relay benchmark saw, and at the ratio
    used before (one per 50 young ones) that came every few seconds under load. A finished
    stream leaves no reference cycle, so those walks find next to nothing; here the middle
    generation is collected once per 1,000 young collections, and the oldest once per 5 of
    those, as often as before (docs/benchmarks.md).
    """
    if threshold <= 0:
        return
    gc.collect()
    gc.freeze()  # start-up objects (modules, app, settings) move out of every collection
    gc.set_threshold(threshold, OLDER_EVERY, OLDEST_EVERY)


# how long the event loop's thread may keep the GIL from a thread that wants it (Python: 5 ms)
SWITCH_INTERVAL_S = 0.001


def tune_gil() -> None:
    """Let the session store's thread have the GIL back sooner.

    SQLite releases the GIL for every statement it runs, and to take it back the store's
    thread waits until the busy event loop's thread is made to let go: up to the switch
    interval, per statement. Under many paced streams a stream's last write (which `done`
    waits for) took about half as long with the shorter interval; the hand-offs are as many
    either way, and the CPU per event did not grow (docs/benchmarks.md)."""
    sys.setswitchinterval(SWITCH_INTERVAL_S)


def proxy_config(forwarded_allow_ips: str) -> dict[str, Any]:
    """uvicorn's proxy-header options: X-Forwarded-For/-Proto are trusted only from the
    addresses in `forwarded_allow_ips`. uvicorn's own default trusts 127.0.0.1, so any
    process on the host (or a proxy there that passes the header on) could pick the client
    address that rate limits and logs count; with none listed, the headers are ignored."""
    allowed = ",".join(part.strip() for part in forwarded_allow_ips.split(",") if part.strip())
    if not allowed:
        return {"proxy_headers": False}
    return {"proxy_headers": True, "forwarded_allow_ips": allowed}


def run(settings: Settings) -> None:
    app = create_app(settings)
    tune_gc(settings.gc_threshold)
    tune_gil()
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        timeout_graceful_shutdown=int(settings.shutdown_grace_s) + 5,
        **proxy_config(settings.forwarded_allow_ips),
    )
    DrainingServer(config).run()
