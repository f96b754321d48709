"""What `tokenrelay serve` reaches into uvicorn's `Server` for, in one place.

Why: `serve` accepts with its own listener (server/listener.py), so it runs uvicorn's
`Server.startup` for a host and port with the listener in place of `loop.create_server`.
That start-up uses uvicorn's internals: the server's `lifespan`, `server_state` and
`_log_started_message`, and the keyword arguments of the config's HTTP protocol class. They
are named here and checked before each start-up: when one is missing (a uvicorn that changed
them), `serve` logs it and falls back to uvicorn's own `startup`, which accepts one
connection per loop turn under uvloop but works. tests/test_listener.py asserts that they
exist, so an upgrade that changes them fails the suite (`make test-newest`), not users.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import socket
import sys
from collections.abc import Callable, Sequence
from typing import Any

import uvicorn
import uvicorn.config

log = logging.getLogger("uvicorn.error")  # where uvicorn reports a port it cannot bind

# uvicorn's exit status for a failed start-up (the constant is in uvicorn.config since 0.31)
STARTUP_FAILURE: int = getattr(uvicorn.config, "STARTUP_FAILURE", 3)

SERVER_NEEDS = ("config", "lifespan", "server_state", "_log_started_message")
LIFESPAN_NEEDS = ("startup", "shutdown", "should_exit", "state")
PROTOCOL_NEEDS = ("config", "server_state", "app_state")  # keyword arguments

Listen = Callable[[Callable[[], asyncio.Protocol]], tuple[list[socket.socket], list[Any]]]


def missing(server: uvicorn.Server) -> list[str]:
    """The internals of a `Server` in start-up (its lifespan made) that `startup` needs and
    this uvicorn lacks; empty when there are all."""
    absent = [name for name in SERVER_NEEDS if not hasattr(server, name)]
    if absent:
        return absent
    absent += [f"lifespan.{n}" for n in LIFESPAN_NEEDS if not hasattr(server.lifespan, n)]
    if not callable(server._log_started_message):
        absent.append("_log_started_message()")
    protocol_class = getattr(server.config, "http_protocol_class", None)
    if protocol_class is None:
        return [*absent, "config.http_protocol_class"]
    try:
        params = set(inspect.signature(protocol_class).parameters)
    except (TypeError, ValueError):
        params = set()
    absent += [f"{protocol_class.__name__}({p}=)" for p in PROTOCOL_NEEDS if p not in params]
    return absent


async def startup(server: uvicorn.Server, listen: Listen) -> None:
    """uvicorn's `Server.startup` for a host and port, with `listen(protocol_factory)` (which
    returns the listening sockets and the servers uvicorn closes on shutdown: objects with
    `close()` and `wait_closed()`) in place of `loop.create_server`. Exits as uvicorn does
    when the app's lifespan start-up fails or the address cannot be bound."""
    absent = missing(server)
    if absent:
        log.warning(
            "uvicorn %s lacks %s: accepting with uvicorn's own listener (one connection per "
            "loop turn under uvloop)",
            uvicorn.__version__,
            ", ".join(absent),
        )
        await uvicorn.Server.startup(server)
        return
    lifespan: Any = server.lifespan
    await lifespan.startup()
    if lifespan.should_exit:
        sys.exit(STARTUP_FAILURE)
    config = server.config

    def protocol() -> asyncio.Protocol:
        return config.http_protocol_class(  # type: ignore[call-arg]
            config=config, server_state=server.server_state, app_state=lifespan.state
        )

    try:
        sockets, servers = listen(protocol)
    except OSError as exc:
        log.error(exc)
        await lifespan.shutdown()
        sys.exit(STARTUP_FAILURE)
    server.servers = servers
    log_started: Callable[[Sequence[socket.socket]], None] = server._log_started_message
    log_started(sockets)
    server.started = True
