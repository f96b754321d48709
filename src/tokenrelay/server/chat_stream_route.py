"""`POST /api/chat/stream` as a pure ASGI route, in front of FastAPI's router.

Why: FastAPI keeps its request machinery alive until the response ends — the dependency exit
stacks, the solved body, the `Request`, the exception handlers' wrappers, its middleware
frames. For a JSON answer that is microseconds; for a stream that stays open for minutes it
was the largest share of the memory each open stream held (docs/benchmarks.md), and
per-request work on the path of every new stream. This route
does the same steps itself: the same `ChatRequest` model, the same error shapes and codes
(unknown query parameters and a field in two spellings included),
the same `start_chat` as the FastAPI route, and then the SSE response with nothing of FastAPI
on its stack.

It sits inside our middleware (access log, CORS, API keys, limits), so all of those apply
unchanged; `create_app` installs it. The FastAPI route stays declared, for the OpenAPI schema
and for an app built without this one.
"""

from __future__ import annotations

import functools
import json
from email.message import Message
from typing import Any

import pydantic
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from tokenrelay.errors import TokenRelayError, ValidationError
from tokenrelay.i18n import tr
from tokenrelay.server.error_responses import error_response, validation_error
from tokenrelay.server.json_checks import check_json_body
from tokenrelay.server.query_check import RESERVED, check_query
from tokenrelay.server.routes.chat import chat_stream_response
from tokenrelay.server.schemas import ChatRequest
from tokenrelay.spelling import explain_spellings

PATH = "/api/chat/stream"


@functools.lru_cache(maxsize=64)  # a few distinct values in practice; parsing one is 10 us
def is_json(content_type: str | None) -> bool:
    """As FastAPI decides it: no Content-Type, application/json or application/*+json."""
    if not content_type:
        return True
    message = Message()
    message["content-type"] = content_type
    main, sub = message.get_content_maintype(), message.get_content_subtype()
    return main == "application" and (sub == "json" or sub.endswith("+json"))


def parse_chat_request(raw: bytes, content_type: str | None) -> ChatRequest:
    """The body as a `ChatRequest`, or VALIDATION_ERROR as the FastAPI route would give it."""
    if not is_json(content_type):
        raise ValidationError(
            tr("the request body must be JSON, not {content_type}", content_type=content_type),
            suggestion=tr("send the body with Content-Type: application/json"),
        )
    if not raw:
        raise ValidationError(
            tr("the request body is empty"),
            suggestion=tr("send a JSON object with a message"),
        )
    check_json_body(raw)
    try:
        return ChatRequest.model_validate_json(raw)
    except pydantic.ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]
        raise validation_error(explain_spellings(errors, {"body": _parsed(raw)})) from None


def _parsed(raw: bytes) -> Any:
    """The body as JSON for an error's explanation, or None (the error path only)."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return None


class ChatStreamRoute:
    """Answers `POST /api/chat/stream`; passes every other request on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        response = await self._start(scope, receive)
        if response is not None:
            await response(scope, receive, send)

    @staticmethod
    async def _start(scope: Scope, receive: Receive) -> Response | None:
        """Everything up to the response, in a frame of its own: the request, its body and
        the parsed model are gone before the stream is sent."""
        request = Request(scope, receive)
        try:
            raw = await request.body()
        except ClientDisconnect:
            return None  # gone before the body arrived: nobody to answer
        except TokenRelayError as exc:  # a chunked body over the limit (server/limits.py): 413
            return error_response(exc)
        try:
            check_query(scope.get("query_string", b""), RESERVED)
            body = parse_chat_request(raw, request.headers.get("content-type"))
            return await chat_stream_response(body, request)
        except TokenRelayError as exc:
            return error_response(exc)
