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


class AccessLogMiddleware:
    def __init__(self, app: ASGIApp, *, log_content: bool = False) -> None:
        self.app = app
        self.log_content = log_content

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not logger.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0
        trace_id: bytes | None = None

        async def logging_send(message: Message) -> None:
            nonlocal status, trace_id
            if message["type"] == "http.response.start":
                status = message["status"]
                for key, value in message.get("headers", ()):
                    if key == b"x-trace-id":
                        trace_id = value
            await send(message)

        try:
            await self.app(scope, receive, logging_send)
        finally:
            handoff = handoff_of(scope)
            if handoff is not None and handoff.reader is not None:  # it goes on: log at the end
                # read at the end, not now: the reader sends the start after this returns
                handoff.after_body.append(lambda: self._log(scope, status, trace_id, started))
            else:
                self._log(scope, status, trace_id, started)

    def _log(self, scope: Scope, status: int, trace_id: bytes | None, started: float) -> None:
        duration = time.perf_counter() - started
        trace = trace_id or header(scope, b"x-trace-id")
        query = scope.get("query_string", b"").decode("latin-1")
        logger.info(
            "request",
            extra={
                "event": "request",
                "method": scope.get("method"),
                "path": scope.get("path"),
                "query": redact_query(query, log_content=self.log_content) or None,
                "status": status or 500,  # 0: the app failed before answering
                "duration_ms": round(duration * 1000, 3),
                "trace_id": trace.decode("latin-1")[:128] if trace else None,
                "client": client_ip(scope),
                "owner": scope_state(scope).get("owner"),
            },
        )
