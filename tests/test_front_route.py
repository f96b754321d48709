"""The one outer layer (server/front.py): our middleware built once, in front of FastAPI.

`POST /api/chat/stream` goes through our middleware only, not through the layers FastAPI puts
around its routes; what those did for it must still happen: an unexpected failure is logged
and answered with our INTERNAL_ERROR shape. The route is defined once, and the OpenAPI
document still has it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import pytest
from starlette.routing import Router

from tests.conftest import run_server
from tests.helpers import chat_stream
from tokenrelay.server import chat_stream_route
from tokenrelay.server.app import create_app
from tokenrelay.server.front import Front
from tokenrelay.server.schemas import ChatRequest


def _chain(app: Any) -> list[Any]:
    """The layers of an ASGI chain, outermost first (each keeps the next in `.app`)."""
    layers = []
    while app is not None and not isinstance(app, Router):
        layers.append(app)
        app = getattr(app, "app", None)
    return layers


def test_every_request_passes_one_stack_of_our_middleware(settings_factory) -> None:
    app = create_app(settings_factory(max_open_streams=5))
    assert isinstance(app, Front)
    layers = _chain(app.stack)
    names = [type(layer).__name__ for layer in layers]
    assert names[0] == "AccessLogMiddleware"
    assert names[-3:] == ["LimitsMiddleware", "ChatStreamRoute", "FastAPI"]
    assert "ErrorBoundary" in names
    assert names.count("LimitsMiddleware") == 1
    assert not {"ServerErrorMiddleware", "ExceptionMiddleware"} & set(names[:-1])
    assert app.api.user_middleware == []  # FastAPI's own stack has none of ours


def test_the_stream_route_is_defined_once_and_documented(settings_factory) -> None:
    app = create_app(settings_factory())
    posts = [
        r
        for r in app.api.routes
        if getattr(r, "path", None) == "/api/chat/stream" and "POST" in getattr(r, "methods", ())
    ]
    assert posts == []  # answered by ChatStreamRoute, in front of FastAPI
    operation = app.openapi()["paths"]["/api/chat/stream"]["post"]
    ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert ref == "#/components/schemas/ChatRequest"
    schemas = app.openapi()["components"]["schemas"]
    assert set(schemas["ChatRequest"]["properties"]) == set(ChatRequest.model_fields)
    assert "text/event-stream" in operation["responses"]["200"]["content"]
    assert "get" in app.openapi()["paths"]["/api/chat/stream"]  # the EventSource form


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


def _request_stacks() -> list[list[str]]:
    """The coroutines that every task running an ASGI request is suspended in, outermost
    first (following each one's `cr_await`)."""
    stacks = []
    for task in asyncio.all_tasks():
        names, awaited = [], task.get_coro()
        while awaited is not None:
            frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "ag_frame", None)
            if frame is not None:
                names.append(frame.f_code.co_qualname)
            awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "ag_await", None)
        if names and names[0] == "RequestResponseCycle.run_asgi":
            stacks.append(names)
    return stacks


async def test_an_open_stream_keeps_no_middleware_frame_and_is_logged_when_it_ends(
    live_server, caplog: pytest.LogCaptureFixture
) -> None:
    body = {"message": "q", "options": {"scripted": {"reply": "a b c", "stall_after": 2}}}
    async with live_server(idle_timeout_s=1.5) as srv, httpx.AsyncClient(base_url=srv.url) as c:
        with caplog.at_level(logging.INFO, logger="tokenrelay.access"):
            async with c.stream("POST", "/api/chat/stream", json=body) as response:
                seen, stacks = "", None
                async for chunk in response.aiter_text():
                    seen += chunk
                    if stacks is None and seen.count("event: token") == 2:
                        stacks = _request_stacks()
                        logged_while_open = [r for r in caplog.records if r.msg == "request"]
                    if "event: error" in seen:
                        break  # the idle timeout ended the stalled stream
    assert len(stacks) == 1
    # the server's frames, then ours: the app's call and the reading it followed
    assert stacks[0][-2:] == ["Front.__call__", "Reader.follow"]
    kept = {"AccessLogMiddleware.__call__", "LimitsMiddleware.__call__", "ChatStreamRoute.__call__"}
    assert not kept & set(stacks[0])
    assert logged_while_open == []  # the access log waits for the end of the stream
    lines = [r for r in caplog.records if r.msg == "request"]
    assert len(lines) == 1
    assert lines[0].status == 200 and lines[0].path == "/api/chat/stream"
    assert lines[0].duration_ms >= 1500  # the whole stream, not just its start


async def test_a_middleware_of_the_deployment_sees_every_byte_it_wraps(settings_factory) -> None:
    """A middleware added to the FastAPI app stands between the outer layer and the routes:
    the responses it wraps are not handed off (their body goes through it); the streaming
    chat, which never reaches it, still is."""
    seen: dict[str, int] = {}

    class Counting:
        def __init__(self, app: Any) -> None:
            self.app = app

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            async def counting(message: Any) -> None:
                if message["type"] == "http.response.body":
                    seen[scope["path"]] = seen.get(scope["path"], 0) + len(message["body"])
                await send(message)

            await self.app(scope, receive, counting)

    settings = settings_factory()
    app = create_app(settings)
    app.api.add_middleware(Counting)
    async with run_server(settings, app) as srv, httpx.AsyncClient(base_url=srv.url) as client:
        body = {"message": "q", "options": {"scripted": {"reply": "a b c"}}}
        started = (await client.post("/api/chat", json=body)).json()
        stream_id = started["stream_id"]
        resumed = await client.get(
            f"/api/streams/{stream_id}", headers={"Last-Event-ID": f"{stream_id}:1"}
        )
        assert "event: done" in resumed.text
    assert seen[f"/api/streams/{stream_id}"] == len(resumed.content)
    assert "/api/chat/stream" not in seen


async def test_a_finished_request_leaves_no_reference_cycle(live_server) -> None:
    """Each request's objects are freed by reference counting when it ends, not left for
    the garbage collector: a cycle per stream (the scope holding the server's `send`, the
    request's event calling back into the reading) made every young collection free whole
    connections, which lengthened the pauses every open stream waits through."""
    import gc

    body = {"message": "q", "options": {"scripted": {"reply": "a b c"}}}
    watched = {"RequestResponseCycle", "Reader", "_NotifyingEvent", "HttpToolsProtocol"}
    async with live_server() as srv, httpx.AsyncClient(base_url=srv.url) as client:
        (await client.post("/api/chat/stream", json=body)).raise_for_status()  # warm up
        gc.collect()
        gc.disable()
        try:
            for _ in range(3):
                response = await client.post("/api/chat/stream", json=body)
                assert "event: done" in response.text
            assert (await client.get("/api/sessions")).status_code == 200
            await asyncio.sleep(0.05)  # the server's side of each request has ended
            gc.set_debug(gc.DEBUG_SAVEALL)
            gc.collect()
            left = sorted({type(o).__name__ for o in gc.garbage} & watched)
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()
    assert left == []


async def test_without_the_access_log_a_stream_still_has_its_line(
    live_server, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="tokenrelay"):
        async with live_server(access_log=False) as srv:
            result = await chat_stream(srv.url, {"message": "q"})
    assert result.types[-1] == "done"
    assert not [r for r in caplog.records if r.msg == "request"]
    (line,) = [r for r in caplog.records if r.msg == "stream finished"]
    assert line.outcome == "done"
