"""Endpoints that answer with one JSON body read the same stream the SSE endpoints send."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi.responses import JSONResponse

from tokenrelay.errors import ErrorCode, http_status_for
from tokenrelay.server.asgi import retry_after_value
from tokenrelay.services import Services


async def collected(services: Services, stream_id: str) -> AsyncIterator[dict[str, Any]]:
    """The stream's events as dicts, until the terminal one. Reading counts as attached, so
    the runner does not cancel the stream as abandoned while it is being collected."""
    services.runner.attach(stream_id)
    finished = False
    try:
        async for env in services.log.read(stream_id):
            finished = env.terminal
            yield orjson.loads(env.data)
    finally:
        services.runner.detach(stream_id, finished=finished)


def error_json(event: dict[str, Any], trace_id: str, **extra: Any) -> JSONResponse:
    """An `error` event as the HTTP error of its code (with Retry-After when it has one)."""
    headers = {"X-Trace-ID": trace_id}
    if event.get("retry_after_s") is not None:
        headers["Retry-After"] = retry_after_value(event["retry_after_s"])
    status = http_status_for(ErrorCode(event["code"]))
    return JSONResponse({**event, **extra}, status_code=status, headers=headers)
