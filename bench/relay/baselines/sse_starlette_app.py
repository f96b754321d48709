"""Baseline: a minimal sse-starlette ``EventSourceResponse`` streaming the same events.

Run: ``uvicorn bench.relay.baselines.sse_starlette_app:app``.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

from bench.relay.baselines.common import (
    Script,
    done_event,
    metadata_event,
    parse_script,
    token_event,
)
from fastapi import FastAPI
from pydantic import BaseModel
from sse_starlette import EventSourceResponse

app = FastAPI()


class ChatRequest(BaseModel):
    message: str
    options: dict[str, Any] = {}


async def _events(script: Script) -> AsyncIterator[dict[str, str]]:
    stream_id = uuid.uuid4().hex
    yield {"event": "metadata", "data": json.dumps(metadata_event(stream_id))}
    for i in range(script.tokens):
        if script.stall_after is not None and i >= script.stall_after:
            await asyncio.Future()  # until the client leaves (cancelled on disconnect)
        await asyncio.sleep(script.delay_s)
        yield {"event": "token", "data": json.dumps(token_event(i))}
    yield {"event": "done", "data": json.dumps(done_event(stream_id, script.tokens))}


@app.post("/api/chat/stream")
async def chat_stream(request: ChatRequest) -> EventSourceResponse:
    script = parse_script({"options": request.options})
    return EventSourceResponse(_events(script))
