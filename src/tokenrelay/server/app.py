"""`create_app(settings)`: the FastAPI app, its lifespan and its error mapping."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sse_starlette.sse import AppStatus
from starlette.types import ASGIApp

from tokenrelay import __version__
from tokenrelay.config import Settings
from tokenrelay.errors import TokenRelayError, internal_error
from tokenrelay.server.asgi import RawSendShim
from tokenrelay.server.chat_stream_route import ChatStreamRoute
from tokenrelay.server.error_responses import error_response, validation_error
from tokenrelay.server.routes import chat, health, openai_compat, plans, sessions, streams, web
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
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(internal_error(exc))

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
    from tokenrelay.server.middleware import install_middleware

    install_middleware(app, settings)


class TokenRelayAPI(FastAPI):
    """FastAPI with the server's own `send` kept in the scope (`server/asgi.py: RawSendShim`),
    so that the SSE response writes its body chunks past the middleware chain."""

    def build_middleware_stack(self) -> ASGIApp:
        return RawSendShim(super().build_middleware_stack())


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    # we drain ourselves on SIGTERM (server/serve.py): streams must not be cut by the library
    AppStatus.disable_automatic_graceful_drain()  # type: ignore[no-untyped-call]

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = await Services.open(settings)
        app.state.services = services
        app.state.documents = services.documents
        try:
            # build the default provider now, so a bad configuration fails at start with its
            # fix; a local model is loaded now too, off the loop, not on the first request
            provider = services.providers.get(settings.provider)
            load = getattr(provider, "load", None)
            if load is not None:
                await asyncio.to_thread(load)
            yield
        finally:
            await services.aclose()

    app = TokenRelayAPI(
        title="tokenrelay",
        version=__version__,
        description="Stream LLM answers over Server-Sent Events.",
        lifespan=lifespan,
    )
    _install_error_handlers(app)
    # innermost of our middleware, in front of the router (see its module doc)
    app.add_middleware(ChatStreamRoute)
    _install_middleware(app, settings)
    for module in (chat, streams, sessions, health, openai_compat, web, plans):
        app.include_router(module.router)
    _include_optional_routers(app)
    return app
