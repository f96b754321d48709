"""Our middleware stack (docs/security.md), built once by `create_app` for `server/front.py`.

Outermost first: access log → CORS (only with `cors_origins`) → the request's language
(`server/locale.py`) → error boundary → API keys
(only with keys) → limits → `ChatStreamRoute` → the FastAPI app. All pure ASGI: work per
request, nothing per streamed chunk beyond a comparison. CORS sits outside auth and limits
so that their 401/429 answers reach browsers; the error boundary inside CORS so that its 503
reaches them too.
"""

from __future__ import annotations

from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tokenrelay.config import Settings
from tokenrelay.delivery.reader import open_streams
from tokenrelay.i18n import localize, tr
from tokenrelay.limits import open_limiter
from tokenrelay.metrics import Metrics
from tokenrelay.server.access_log import AccessLogMiddleware
from tokenrelay.server.asgi import send_error
from tokenrelay.server.chat_stream_route import ChatStreamRoute
from tokenrelay.server.error_responses import boundary_error
from tokenrelay.server.limits import Admissions, LimitsConfig, LimitsMiddleware, LimitsState
from tokenrelay.server.locale import LocaleMiddleware
from tokenrelay.server.security import AuthMiddleware, load_keyring, parse_origins

CORS_ALLOW_HEADERS = ["Authorization", "Content-Type", "Last-Event-ID", "X-Trace-ID"]
CORS_EXPOSE_HEADERS = ["X-Trace-ID", "Retry-After"]
CORS_METHODS = ["GET", "POST", "DELETE"]


def build_stack(api: FastAPI, settings: Settings) -> ASGIApp:
    """Our middleware around `ChatStreamRoute` around `api`, built once (`server/front.py`
    runs it); a bad key file or origin fails here, with its fix."""
    install_http_error_shape(api)
    keyring = load_keyring(settings)
    origins = parse_origins(settings.cors_origins)
    limiter = open_limiter(settings)
    api.state.limits = LimitsState(limiter, float(settings.overload_retry_after_s))
    api.state.auth_enabled = keyring is not None

    def running_streams() -> int:  # and open readings with a slot of their own (delivery)
        services = getattr(api.state, "services", None)
        return open_streams(services.runner) if services is not None else 0

    def metrics() -> Metrics | None:
        services = getattr(api.state, "services", None)
        return services.metrics if services is not None else None

    # innermost first
    app: ASGIApp = ChatStreamRoute(api)
    app = LimitsMiddleware(
        app,
        limiter=limiter,
        config=LimitsConfig.from_settings(settings),
        running_streams=running_streams,
        metrics=metrics,
        admissions=Admissions(),
    )
    if keyring is not None:
        app = AuthMiddleware(
            app, keyring=keyring, metrics_public=settings.metrics_public, metrics=metrics
        )
    app = LocaleMiddleware(ErrorBoundary(app), default=settings.locale)
    if origins:
        app = CORSMiddleware(
            app,
            allow_origins=origins,
            allow_methods=CORS_METHODS,
            allow_headers=CORS_ALLOW_HEADERS,
            expose_headers=CORS_EXPOSE_HEADERS,
            max_age=600,
        )
    if settings.access_log:
        app = AccessLogMiddleware(app, log_content=settings.log_content)
    return app


def install_http_error_shape(app: FastAPI) -> None:
    """Errors raised by the framework itself (unknown path, wrong method, a body that is not
    UTF-8 or nests too deep) get our JSON shape too, not `{"detail": ...}`: VALIDATION_ERROR
    with the framework's own 4xx status."""

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        status = exc.status_code
        phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else ""
        detail = str(exc.detail) if exc.detail else phrase
        message: str
        suggestion: str
        if status == 400 and "parsing the body" in detail:
            message = tr("the request body could not be read as UTF-8 JSON")
            suggestion = tr("send a JSON object encoded as UTF-8")
        elif status in (404, 405):
            message = (
                tr(
                    "{method} {path}: no such endpoint",
                    method=request.method,
                    path=request.url.path,
                )
                if status == 404
                else tr(
                    "{method} {path}: this method is not allowed here",
                    method=request.method,
                    path=request.url.path,
                )
            )
            suggestion = tr("see /docs for the endpoints and their methods")
        else:
            message = tr("the request was refused ({detail})", detail=detail)
            suggestion = tr("fix the request; see /docs")
        body = {
            "code": "VALIDATION_ERROR" if status < 500 else "INTERNAL_ERROR",
            "message": localize(message),
            "suggestion": localize(suggestion),
            "retryable": status >= 500,
        }
        return JSONResponse(body, status_code=status, headers=exc.headers)

    app.add_exception_handler(HTTPException, on_http_error)


class ErrorBoundary:
    """Where an exception that no route handler answered becomes our JSON error, once.

    A middleware's failure (the rate limiter's Redis gone, a chunked body cut off at the
    limit) never reaches FastAPI's handlers, which wrap the routes only; Starlette's outermost
    handler made every one of them a 500. Here: our errors keep their code and status, a lost
    connection to Redis or PostgreSQL is 503 BACKEND_UNAVAILABLE with Retry-After, anything
    else 500 INTERNAL_ERROR (`error_responses.boundary_error`). Once the response has started
    the exception goes on to the server, which closes the connection."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        watching = _Watching(send)
        try:
            await self.app(scope, receive, watching)
        except Exception as exc:
            if watching.started:
                raise
            error = boundary_error(exc, f"{scope.get('method')} {scope.get('path')}")
            await send_error(send, error)


class _Watching:
    """`send`, noting whether the response has started (`ErrorBoundary`); an object, not a
    closure: a waiting stream's reader holds it until its start (server/access_log.py)."""

    __slots__ = ("send", "started")

    def __init__(self, send: Send) -> None:
        self.send = send
        self.started = False

    async def __call__(self, message: Message) -> None:
        self.started = True
        await self.send(message)
