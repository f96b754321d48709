"""`create_app(settings)`: the app (`server/front.py` around the FastAPI app), its lifespan
and its error mapping."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from tokenrelay import __version__
from tokenrelay.config import Settings
from tokenrelay.errors import TokenRelayError
from tokenrelay.server.error_responses import boundary_error, error_response, validation_error
from tokenrelay.server.front import Front
from tokenrelay.server.middleware import build_stack
from tokenrelay.server.openapi import install_openapi
from tokenrelay.server.readiness import Readiness
from tokenrelay.server.routes import (
    chat,
    health,
    openai_compat,
    plans,
    session_turns,
    sessions,
    streams,
    ui_chat,
    web,
)
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


def create_app(settings: Settings | None = None) -> Front:
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

    api = FastAPI(
        title="tokenrelay",
        version=__version__,
        description="Stream LLM answers over Server-Sent Events.",
        lifespan=lifespan,
    )
    _install_error_handlers(api)
    routers = (chat, streams, sessions, session_turns, health, openai_compat, web, plans, ui_chat)
    for module in routers:
        api.include_router(module.router)
    _include_optional_routers(api)
    install_openapi(api)
    return Front(
        api,
        build_stack(api, settings),
        max_header_count=settings.max_header_count,
        max_header_bytes=settings.max_header_bytes,
    )
