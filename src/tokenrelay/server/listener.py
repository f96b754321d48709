"""A listening socket that accepts many waiting connections each time it wakes up.

Why: since libuv 1.45 (libuv pull request 3696), which uvloop bundles, a server accepts one
connection per event-loop turn and relies on the next turn to see the rest. With a thousand
streams open a turn takes a few milliseconds, so connections were accepted at a few hundred a
second however fast they arrived: when many streams open at once, the last ones waited in
the kernel's accept queue for far longer than a loop turn takes (docs/benchmarks.md). That
wait was the whole tail of the time to first token, and of the stream duration. Python's
own event loop accepts up to the listen backlog per wake-up; this does the same under any
loop, uvloop included.

Each accepted socket is handed to the loop with `connect_accepted_socket`, so the transport
is the loop's own (uvloop's, with TCP_NODELAY) and the protocol is uvicorn's, as with
`loop.create_server`.

Many, not all: up to `ACCEPT_BATCH` per wake-up, and the rest at the next loop turn. Each
accepted connection brings a request whose set-up (parsing, validation, starting its stream)
runs within the next loop turns, and while a turn runs no open stream gets its tokens.
Taking up to the whole backlog at once put hundreds of set-ups into one turn during a burst
of new streams, and every long inter-token gap came from such a burst, none from the steady
state after it (docs/benchmarks.md). A bounded batch per turn still admits thousands of
connections a second.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable

log = logging.getLogger("tokenrelay.server")

ACCEPT_BATCH = 32  # connections accepted per wake-up at most (see the module doc)

# out of file descriptors or kernel memory: accepting more now would only fail again
_RESOURCE_ERRORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
PAUSE_S = 1.0  # how long accepting stops after such an error (as asyncio's loop does)


class GreedyListener:
    """Accepts on `sock` (bound and listening) for `protocol_factory`, until `close()`: up to
    `batch` waiting connections each time the socket wakes the loop.

    The asyncio `Server` methods uvicorn calls on its servers: `close`, `wait_closed`."""

    def __init__(
        self,
        sock: socket.socket,
        protocol_factory: Callable[[], asyncio.Protocol],
        *,
        batch: int,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._sock = sock
        self._factory = protocol_factory
        self._batch = max(1, batch)
        self._handshakes: set[asyncio.Task[object]] = set()
        self._resume: asyncio.TimerHandle | None = None
        self._closed = False
        sock.setblocking(False)
        self._loop.add_reader(sock.fileno(), self._accept)

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return () if self._closed else (self._sock,)

    def _accept(self) -> None:
        for _ in range(self._batch):
            try:
                conn, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return  # nothing more waiting
            except ConnectionAbortedError:
                continue  # the client gave up before we got to it
            except OSError as exc:
                if exc.errno not in _RESOURCE_ERRORS:
                    raise
                log.error(
                    "cannot accept connections (%s); retrying in %.0f s. Raise the open-file "
                    "limit (ulimit -n) if this persists",
                    exc,
                    PAUSE_S,
                )
                self._loop.remove_reader(self._sock.fileno())
                self._resume = self._loop.call_later(PAUSE_S, self._start_again)
                return
            handshake = self._loop.create_task(
                self._loop.connect_accepted_socket(self._factory, conn)
            )
            self._handshakes.add(handshake)
            handshake.add_done_callback(self._handed_over)

    def _handed_over(self, task: asyncio.Task[object]) -> None:
        self._handshakes.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("an accepted connection could not be set up: %s", task.exception())

    def _start_again(self) -> None:
        self._resume = None
        if not self._closed:
            self._loop.add_reader(self._sock.fileno(), self._accept)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._resume is not None:
            self._resume.cancel()
        else:
            self._loop.remove_reader(self._sock.fileno())
        self._sock.close()

    async def wait_closed(self) -> None:
        if self._handshakes:
            await asyncio.wait(tuple(self._handshakes))


def bind(host: str, port: int, backlog: int) -> list[socket.socket]:
    """Listening TCP sockets on `host:port`: one per address `host` resolves to, as
    `loop.create_server` makes (``localhost`` may be both 127.0.0.1 and ::1)."""
    # "" means every interface, as `loop.create_server` takes it
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    seen: set[tuple[int, object]] = set()
    try:
        for family, kind, proto, _, address in infos:
            if (family, address) in seen:
                continue
            seen.add((family, address))
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(backlog)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets
