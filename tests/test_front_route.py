"""`POST /api/chat/stream` goes through our middleware only (server/app.py: TokenRelayAPI).

What the layers FastAPI puts around our middleware did for this request must still happen:
an unexpected failure is logged and answered with our INTERNAL_ERROR shape, and what one
middleware counts is counted once per app, whichever chain a request came through.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
from starlette.routing import Router

from tokenrelay.server import chat_stream_route
from tokenrelay.server.app import TokenRelayAPI, create_app
from tokenrelay.server.chat_stream_route import ChatStreamRoute
from tokenrelay.server.limits import LimitsMiddleware


def _chain(app: Any) -> list[Any]:
    """The layers of an ASGI chain, outermost first (each keeps the next in `.app`)."""
    layers = []
    while app is not None and not isinstance(app, Router):
        layers.append(app)
        app = getattr(app, "app", None)
    return layers


def test_the_stream_route_passes_our_middleware_and_no_other(settings_factory) -> None:
    app = create_app(settings_factory(max_open_streams=5))
    assert isinstance(app, TokenRelayAPI)
    front = _chain(app._build_front())
    names = [type(layer).__name__ for layer in front]
    assert names[0] == "_UnexpectedErrors"
    assert names[-2:] == ["LimitsMiddleware", "ChatStreamRoute"]
    assert "AccessLogMiddleware" in names
    assert not {"ServerErrorMiddleware", "ExceptionMiddleware"} & set(names)

    # the other requests' chain holds instances of its own; state is shared between them
    rest = _chain(app.build_middleware_stack())
    limits = [layer for layer in rest if isinstance(layer, LimitsMiddleware)]
    assert len(limits) == 1
    front_limits = next(layer for layer in front if isinstance(layer, LimitsMiddleware))
    assert front_limits is not limits[0]
    assert front_limits.admissions is limits[0].admissions
    assert any(isinstance(layer, ChatStreamRoute) for layer in rest)


async def test_an_unexpected_failure_is_logged_and_answered_in_our_shape(
    live_server, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(body: Any, request: Any) -> Any:
        raise RuntimeError("a bug in the route")

    monkeypatch.setattr(chat_stream_route, "chat_stream_response", broken)
    async with live_server() as srv, httpx.AsyncClient(base_url=srv.url) as client:
        with caplog.at_level(logging.ERROR, logger="tokenrelay.server"):
            response = await client.post("/api/chat/stream", json={"message": "hi"})
        after = await client.get("/healthz")
    assert response.status_code == 500
    error = response.json()
    assert error["code"] == "INTERNAL_ERROR"
    assert error["retryable"] is True
    assert "a bug in the route" not in response.text  # details go to the log, not the client
    assert any("POST /api/chat/stream" in r.getMessage() for r in caplog.records)
    assert after.status_code == 200  # the server goes on
