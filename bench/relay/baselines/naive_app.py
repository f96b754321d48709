"""Baseline: the SSE endpoint users hand-write with FastAPI's ``StreamingResponse``.

A pydantic request model, an async generator that yields ``f"data: {json.dumps(...)}\\n\\n"``
and ``asyncio.sleep`` between tokens. Run: ``uvicorn bench.relay.baselines.naive_app:app``.
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
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

app = FastAPI()


class ChatRequest(BaseModel):
    message: str
    options: dict[str, Any] = {}


async def _events(script: Script) -> AsyncIterator[str]:
    stream_id = uuid.uuid4().hex
    yield f"data: {json.dumps(metadata_event(stream_id))}\n\n"
    for i in range(script.tokens):
        if script.stall_after is not None and i >= script.stall_after:
            await asyncio.Future()  # until the client leaves (cancelled on disconnect)
        await asyncio.sleep(script.delay_s)
        yield f"data: {json.dumps(token_event(i))}\n\n"
    yield f"data: {json.dumps(done_event(stream_id, script.tokens))}\n\n"


@app.post("/api/chat/stream")
async def chat_stream(request: ChatRequest) -> StreamingResponse:
    script = parse_script({"options": request.options})
    return StreamingResponse(_events(script), media_type="text/event-stream")
