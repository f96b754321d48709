"""Checks every JSON request body gets before a route reads it: nesting depth and lone surrogates.

- Nesting past `MAX_JSON_DEPTH` levels → 422 VALIDATION_ERROR. Free-form fields (`metadata`,
  tool schemas) would otherwise carry any depth into the stores and encoders, where Python's
  recursion limit or orjson's own limit fails with a 500, or after the stream has started.
- A lone surrogate (`"\\ud800"`, which JSON allows as an escape) → 400 VALIDATION_ERROR. It
  cannot be encoded as UTF-8, so it failed wherever text was next written (the model, the
  store, the SSE frame), mid-stream.

Both checks cost two `bytes.count` and one `in` for an ordinary body: the body is parsed a
second time only when it has more than `MAX_JSON_DEPTH` brackets or a surrogate escape.
`CheckedRoute` runs them for the FastAPI routes; `chat_stream_route` calls `check_json_body`.
`CheckedRoute` also holds the route-wide checks of the query (server/query_check.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Coroutine
from typing import Any, ClassVar

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

from tokenrelay.errors import ValidationError
from tokenrelay.i18n import tr
from tokenrelay.server.query_check import check_query, declared_query_names
from tokenrelay.spelling import explain_spellings

MAX_JSON_DEPTH = 64
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abcdefABCDEF]")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class UnencodableText(ValidationError):
    """Text that is not valid Unicode: our VALIDATION_ERROR shape, with HTTP 400."""

    @property
    def http_status(self) -> int:
        return 400


def too_deep(limit: int = MAX_JSON_DEPTH) -> ValidationError:
    return ValidationError(
        tr("the JSON nests deeper than {limit} levels", limit=limit),
        suggestion=tr(
            "flatten the data: objects and arrays at most {limit} levels deep", limit=limit
        ),
    )


def lone_surrogate() -> UnencodableText:
    return UnencodableText(
        tr(
            "the request holds text that is not valid Unicode (a lone surrogate such as {example})",
            example="\\ud800",
        ),
        suggestion=tr(
            "send valid UTF-8; {escape} escapes of surrogates must come in pairs", escape="\\u"
        ),
    )


def depth_of(value: Any, limit: int = MAX_JSON_DEPTH) -> int:
    """How deep `value` nests (a scalar: 0), counted without recursion, up to `limit` + 1."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        depth += 1
        if depth > deepest:
            deepest = depth
            if deepest > limit:
                return deepest
        stack.extend((child, depth) for child in children)
    return deepest


def has_lone_surrogate(value: Any) -> bool:
    """Does any string (key or value) in `value` hold a surrogate that UTF-8 cannot encode?"""
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def check_json_value(value: Any, limit: int = MAX_JSON_DEPTH) -> None:
    """Raise our errors for a parsed JSON value that nests too deep or holds a lone surrogate."""
    if depth_of(value, limit) > limit:
        raise too_deep(limit)
    if has_lone_surrogate(value):
        raise lone_surrogate()


def check_json_body(raw: bytes, limit: int = MAX_JSON_DEPTH) -> None:
    """Check a JSON body before it is validated. A body that is not JSON passes: the route's
    own parser reports it, in the route's own words."""
    deep = raw.count(b"{") + raw.count(b"[") > limit
    if not deep and not (b"\\u" in raw and _SURROGATE_ESCAPE.search(raw)):
        return
    try:
        value = json.loads(raw)
    except RecursionError:
        raise too_deep(limit) from None
    except ValueError:
        return
    check_json_value(value, limit)


def _is_json(content_type: str | None) -> bool:
    if not content_type:
        return True
    main = content_type.split(";", 1)[0].strip().lower()
    return main == "application/json" or (
        main.startswith("application/") and main.endswith("+json")
    )


class CheckedRoute(APIRoute):
    """An `APIRoute` that runs `check_json_body` on a JSON body before FastAPI parses it.

    The body is read here once; Starlette keeps it on the request, which the route reads.
    On the native API (`native`) it also refuses query parameters the route does not read
    (server/query_check.py), and says so when a body gives a field in both spellings
    (tokenrelay/spelling.py)."""

    native: ClassVar[bool] = True

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        allowed = declared_query_names(self.dependant) if self.native else None

        async def route(request: Request) -> Response:
            if allowed is not None:
                check_query(request.scope.get("query_string", b""), allowed)
            if request.method in _BODY_METHODS and _is_json(request.headers.get("content-type")):
                check_json_body(await request.body())
            if allowed is None:
                return await handler(request)
            try:
                return await handler(request)
            except RequestValidationError as exc:
                errors = explain_spellings(exc.errors(), {"body": exc.body})
                raise RequestValidationError(errors, body=exc.body) from None

        return route
