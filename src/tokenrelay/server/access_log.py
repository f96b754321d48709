"""One JSON log line per HTTP request, from a pure ASGI middleware.

Fields: method, path, query (keys and, unless `log_content`, the user's text redacted),
status, duration_ms, trace_id (the response's X-Trace-ID, else the request's), client, owner.
It looks at each response message only to find the status; per streamed chunk that is one
comparison.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tokenrelay.logs import redact_query
from tokenrelay.server.asgi import client_ip, handoff_of, header, scope_state

logger = logging.getLogger("tokenrelay.access")


class _Seen:
    """The `send` the app gets: it notes the response's status and trace id on the way.

    A small object rather than a closure: a stream's reader holds this `send` until it sends
    the start (up to `stream_start_wait_s`), and a closure with its cells cost several times
    the bytes, for each of a thousand waiting streams (docs/benchmarks.md, delivery-seam)."""

    __slots__ = ("log", "scope", "send", "started", "status", "trace_id")

    def __init__(self, send: Send, started: float) -> None:
        self.send = send
        self.started = started
        self.status = 0  # 0: the app failed before answering
        self.trace_id: bytes | None = None
        # a response that goes on after the chain returned: logged at its end (`end`)
        self.scope: Scope | None = None
        self.log: Callable[[Scope, _Seen], None] | None = None

    def end(self) -> None:
        if self.log is not None and self.scope is not None:
            self.log(self.scope, self)

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            for key, value in message.get("headers", ()):
                if key == b"x-trace-id":
                    self.trace_id = value
        await self.send(message)


class AccessLogMiddleware:
    def __init__(self, app: ASGIApp, *, log_content: bool = False) -> None:
        self.app = app
        self.log_content = log_content

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not logger.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        seen = _Seen(send, time.perf_counter())
        try:
            await self.app(scope, receive, seen)
        finally:
            handoff = handoff_of(scope)
            if handoff is not None and handoff.reader is not None:  # it goes on: log at the end
                # read at the end, not now: the reader sends the start after this returns
                seen.scope, seen.log = scope, self._log  # `seen.end`: no closure, no partial
                handoff.after_body.append(seen.end)
            else:
                self._log(scope, seen)

    def _log(self, scope: Scope, seen: _Seen) -> None:
        duration = time.perf_counter() - seen.started
        status = seen.status
        trace = seen.trace_id or header(scope, b"x-trace-id")
        query = scope.get("query_string", b"").decode("latin-1")
        logger.info(
            "request",
            extra={
                "event": "request",
                "method": scope.get("method"),
                "path": scope.get("path"),
                "query": redact_query(query, log_content=self.log_content) or None,
                "status": status or 500,
                "duration_ms": round(duration * 1000, 3),
                "trace_id": trace.decode("latin-1")[:128] if trace else None,
                "client": client_ip(scope),
                "owner": scope_state(scope).get("owner"),
            },
        )
