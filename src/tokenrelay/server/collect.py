"""Endpoints that answer with one JSON body read the same stream the SSE endpoints send."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi.responses import JSONResponse

from tokenrelay.delivery.reader import read_events
from tokenrelay.errors import ErrorCode, http_status_for
from tokenrelay.server.asgi import retry_after_value
from tokenrelay.services import Services


async def collected(services: Services, stream_id: str) -> AsyncIterator[dict[str, Any]]:
    """The stream's events as dicts, until the terminal one. Reading counts as attached
    (`delivery.reader.read_events`), so the runner does not cancel the stream as abandoned
    while it is being collected."""
    events = read_events(services.runner, services.log, stream_id)
    try:
        async for env in events:
            yield orjson.loads(env.data)
    finally:
        await events.aclose()


def error_json(event: dict[str, Any], trace_id: str, **extra: Any) -> JSONResponse:
    """An `error` event as the HTTP error of its code (with Retry-After when it has one)."""
    headers = {"X-Trace-ID": trace_id}
    if event.get("retry_after_s") is not None:
        headers["Retry-After"] = retry_after_value(event["retry_after_s"])
    status = http_status_for(ErrorCode(event["code"]))
    return JSONResponse({**event, **extra}, status_code=status, headers=headers)
