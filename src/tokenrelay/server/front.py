"""`Front`: the one outer ASGI layer of the app that `create_app` returns.

Every HTTP request goes through it, once, in this order:

1. Headers are bounded (431, `max_header_count` / `max_header_bytes`): uvicorn's httptools
   parser takes headers of any size and number, so they are checked before any layer reads
   them (server/limits.py).
2. Our middleware (server/middleware.py, built once): access log, CORS, error boundary, API
   keys, limits; then `ChatStreamRoute`, which answers `POST /api/chat/stream` itself, in
   front of FastAPI; then the FastAPI app for every other route.
3. The hand-off (`asgi.Handoff`): while every layer between this one and a route is ours, an
   SSE response sends its start through the chain and leaves its `Reader` in the hand-off;
   this layer follows it once the chain has returned, and the body goes to the server's own
   `send` (and from there, under uvicorn, to the direct sink: delivery/sinks.py). A
   middleware that a deployment adds to the FastAPI app (`app.api.add_middleware`) stands
   between, and it sees every byte of the responses it wraps: then there is no hand-off,
   except for `POST /api/chat/stream`, which never reaches it. A middleware that wraps this
   app from outside sees every byte by itself.

Lifespan and websocket scopes go straight to FastAPI. `state` is the FastAPI app's.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from starlette.datastructures import State
from starlette.types import ASGIApp, Receive, Scope, Send

from tokenrelay.server.asgi import HANDOFF, Handoff, send_error
from tokenrelay.server.chat_stream_route import PATH as CHAT_STREAM_PATH
from tokenrelay.server.limits import headers_over_limit


class Front:
    def __init__(
        self,
        api: FastAPI,
        stack: ASGIApp,
        *,
        max_header_count: int = 100,
        max_header_bytes: int = 16_384,
    ) -> None:
        self.api = api  # the FastAPI app: its routes, its OpenAPI document, its state
        self.stack = stack  # our middleware around `ChatStreamRoute` around `api`
        self.max_header_count = max_header_count
        self.max_header_bytes = max_header_bytes

    @property
    def state(self) -> State:
        return self.api.state

    def openapi(self) -> dict[str, Any]:
        return self.api.openapi()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.api(scope, receive, send)
            return
        too_many = headers_over_limit(scope, self.max_header_count, self.max_header_bytes)
        if too_many is not None:
            await send_error(send, too_many, {"Connection": "close"})
            return
        scope["app"] = self.api  # as FastAPI sets it: `request.app` in our layers too
        if self.api.user_middleware and scope["path"] != CHAT_STREAM_PATH:
            await self.stack(scope, receive, send)  # a layer not ours: no hand-off
            return
        handoff = scope[HANDOFF] = Handoff(send)
        try:
            await self.stack(scope, receive, send)
            reader, handoff.reader = handoff.reader, None
            if reader is not None:
                await reader.follow()
        except BaseException:
            left, handoff.reader = handoff.reader, None  # handed back, then the chain failed
            if left is not None:
                left.abandon()
            raise
        finally:
            for done in handoff.after_body:
                done()
            # uvicorn's request cycle holds the scope, and `send` is the cycle's method: kept
            # in the scope, every request would be a reference cycle that only the garbage
            # collector frees, with its connection (docs/benchmarks.md)
            del scope[HANDOFF]
