"""`create_app(settings)`: the FastAPI app, its lifespan and its error mapping."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from tokenrelay import __version__
from tokenrelay.config import Settings
from tokenrelay.errors import TokenRelayError
from tokenrelay.server.access_log import AccessLogMiddleware
from tokenrelay.server.asgi import AFTER_BODY, HANDOFF, RAW_SEND, send_error
from tokenrelay.server.chat_stream_route import PATH as CHAT_STREAM_PATH
from tokenrelay.server.chat_stream_route import ChatStreamRoute
from tokenrelay.server.error_responses import boundary_error, error_response, validation_error
from tokenrelay.server.limits import LimitsMiddleware, headers_over_limit
from tokenrelay.server.middleware import ErrorBoundary, install_middleware
from tokenrelay.server.readiness import Readiness
from tokenrelay.server.routes import (
    chat,
    health,
    openai_compat,
    plans,
    sessions,
    streams,
    ui_chat,
    web,
)
from tokenrelay.server.security import AuthMiddleware
from tokenrelay.server.sse import StreamReading
from tokenrelay.services import Services

logger = logging.getLogger("tokenrelay.server")


def _install_error_handlers(app: FastAPI) -> None:
    async def on_ours(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, TokenRelayError)
        return error_response(exc)

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return error_response(validation_error(list(exc.errors())))

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        return error_response(boundary_error(exc, f"{request.method} {request.url.path}"))

    app.add_exception_handler(TokenRelayError, on_ours)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(Exception, on_unexpected)


def _include_optional_routers(app: FastAPI) -> None:
    """Routers of layers that may not be installed in every deployment."""
    for module_name in ("tokenrelay.server.routes.documents",):
        if importlib.util.find_spec(module_name) is not None:
            module = importlib.import_module(module_name)
            app.include_router(module.router)


def _install_middleware(app: FastAPI, settings: Settings) -> None:
    """API keys, limits, CORS and the access log (docs/security.md); all pure ASGI."""

    install_middleware(app, settings)


class TokenRelayAPI(FastAPI):
    """FastAPI with two things done on the way in, before its own middleware stack.

    - The server's own `send` is kept in the scope (`asgi.RAW_SEND`): an SSE response sends
      its start through the middleware chain, so every middleware sees the status and
      headers, and then its body chunks with this `send`, past the chain. Each middleware
      wraps `send` in a coroutine of its own, a cost paid per token that the relay
      benchmark's paced CPU per event showed (docs/benchmarks.md). A middleware that rewrites
      response bodies (compression) must not wrap SSE routes anyway.
    - `POST /api/chat/stream`, the request that opens a stream, goes through our middleware
      only (access log, CORS, API keys, limits, then `ChatStreamRoute`), not through the
      layers FastAPI puts around them (Starlette's error handler, FastAPI's exception
      telemetry and body limit, which we do not configure). An open stream keeps the frames
      of every layer it was called through for as long as it lasts: fewer layers are less
      memory per open stream and fewer calls per new stream (docs/benchmarks.md).
      `ErrorBoundary` (server/middleware.py) answers what Starlette's error handler would have.
    """

    _front: ASGIApp | None = None
    _handoff = False
    max_header_count = 100  # `create_app` sets both from the settings
    max_header_bytes = 16_384

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        # uvicorn's httptools parser takes headers of any size and number: bounded here,
        # before any layer reads them (431, server/limits.py)
        too_many = headers_over_limit(scope, self.max_header_count, self.max_header_bytes)
        if too_many is not None:
            await send_error(send, too_many, {"Connection": "close"})
            return
        scope[RAW_SEND] = send
        try:
            front = None
            if scope["method"] == "POST" and scope["path"] == CHAT_STREAM_PATH:
                front = self._front or self._build_front()
            if front is None:
                await super().__call__(scope, receive, send)
                return
            scope["app"] = self
            if self.root_path:
                scope["root_path"] = self.root_path
            if not self._handoff:
                await front(scope, receive, send)
                return
            # The chain answers; a stream's reading it hands back (`asgi.HANDOFF`) is
            # followed here, in this frame, after every layer of the chain has returned: an
            # open stream keeps none of their frames (docs/benchmarks.md). Only when each layer
            # knows to do its end-of-response work in `AFTER_BODY` (`_HANDOFF_AWARE`), which
            # runs once, however the response ends.
            scope[HANDOFF] = None
            try:
                await front(scope, receive, send)
                reading = cast("StreamReading | None", scope.pop(HANDOFF, None))
                if reading is not None:
                    await reading.follow()
            except BaseException:
                left = scope.pop(HANDOFF, None)  # handed back, then the chain failed
                if left is not None:
                    left.abandon()
                raise
            finally:
                for done in scope.pop(AFTER_BODY, ()):
                    done()
        finally:
            # uvicorn's request cycle holds the scope, and `send` is the cycle's method: kept
            # in the scope, every request would be a reference cycle that only the garbage
            # collector frees, with its connection (docs/benchmarks.md)
            scope.pop(RAW_SEND, None)

    def _build_front(self) -> ASGIApp | None:
        """Our middleware around `ChatStreamRoute`, which answers every request that reaches
        it here (the router behind it is never called); None when the app has no such route.
        Middleware state that must be one per app is shared through the constructor
        arguments (`limits.Admissions`), which both chains are built from."""
        if not any(m.cls is cast(Any, ChatStreamRoute) for m in self.user_middleware):
            return None
        app: ASGIApp = self.router
        for cls, args, kwargs in reversed(self.user_middleware):
            app = cls(app, *args, **kwargs)
        self._handoff = all(m.cls in _HANDOFF_AWARE for m in self.user_middleware)
        self._front = ErrorBoundary(app)
        return self._front


# layers that do nothing after the response start but what they leave in AFTER_BODY (or
# nothing at all); a middleware a deployment adds is not one, so no handoff with it
_HANDOFF_AWARE: set[Any] = {
    AccessLogMiddleware,
    AuthMiddleware,
    CORSMiddleware,
    ChatStreamRoute,
    ErrorBoundary,
    LimitsMiddleware,
}


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            services = await Services.open(settings)
        except TokenRelayError as exc:  # the operator's fix goes to the log, not to clients
            logger.error("start-up failed: %s (%s)", exc, exc.details or exc.suggestion)
            raise
        app.state.services = services
        app.state.documents = services.documents
        app.state.readiness = Readiness(settings)
        try:
            # build the default provider now, so a bad configuration fails at start with its
            # fix; a local model is loaded now too, off the loop, not on the first request
            provider = services.providers.get(settings.provider)
            load = getattr(provider, "load", None)
            if load is not None:
                await asyncio.to_thread(load)
            yield
        finally:
            await app.state.readiness.aclose()
            await services.aclose()

    app = TokenRelayAPI(
        title="tokenrelay",
        version=__version__,
        description="Stream LLM answers over Server-Sent Events.",
        lifespan=lifespan,
    )
    app.max_header_count = settings.max_header_count
    app.max_header_bytes = settings.max_header_bytes
    _install_error_handlers(app)
    # innermost of our middleware, in front of the router (see its module doc)
    app.add_middleware(ChatStreamRoute)
    _install_middleware(app, settings)
    for module in (chat, streams, sessions, health, openai_compat, web, plans, ui_chat):
        app.include_router(module.router)
    _include_optional_routers(app)
    return app
