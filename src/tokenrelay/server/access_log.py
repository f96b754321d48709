"""One JSON log line per HTTP request, from a pure ASGI middleware.

Fields: method, path, query (keys and, unless `log_content`, the user's text redacted),
status, duration_ms, trace_id (the response's X-Trace-ID, else the request's), client, owner.
It looks at each response message only to find the status; per streamed chunk that is one
comparison.
"""

from __future__ import annotations

import logging
import time

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

    def __init__(self, log: AccessLogMiddleware, scope: Scope, send: Send) -> None:
        self.log = log
        self.scope = scope
        self.send = send
        self.started = time.perf_counter()
        self.status = 0  # 0: the app failed before answering
        self.trace_id: bytes | None = None

    def end(self) -> None:
        """The request's log line (at the response's end: no closure, no partial)."""
        self.log.write(self)

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
        seen = _Seen(self, scope, send)
        try:
            await self.app(scope, receive, seen)
        finally:
            handoff = handoff_of(scope)
            if handoff is not None and handoff.reader is not None:  # it goes on: log at the end
                # read at the end, not now: the reader sends the start after this returns
                handoff.after_body.append(seen.end)
            else:
                seen.end()

    def write(self, seen: _Seen) -> None:
        scope = seen.scope
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
