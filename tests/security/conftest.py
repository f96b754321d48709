"""Fixtures of the security tests: two API keys, log capture, a stream held open, Redis."""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import redis_url
from tokenrelay.logs import JsonFormatter
from tokenrelay.sse_parser import SSEParser

ALICE_KEY = "alice-0123456789abcdefghij"
BOB_KEY = "bob-0123456789abcdefghijkl"
KEYS = f"alice:{ALICE_KEY},bob:{BOB_KEY}"
ALICE = {"Authorization": f"Bearer {ALICE_KEY}"}
BOB = {"Authorization": f"Bearer {BOB_KEY}"}

STALL = {"options": {"scripted": {"reply": "one two three", "stall_after": 1}}}


CLIENT_LOGGERS = ("httpx", "httpcore")


class LogLines(logging.Handler):
    """Every record of every server-side logger, formatted as our JSON lines."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []
        self._json = JsonFormatter()

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(CLIENT_LOGGERS):  # the test's own HTTP client, not the server
            return
        self.lines.append(self._json.format(record))

    def text(self) -> str:
        return "\n".join(self.lines)


@pytest.fixture
def log_lines() -> Iterator[LogLines]:
    handler = LogLines()
    # ours at DEBUG; libraries at INFO, as deployed (aiosqlite logs SQL parameters at DEBUG)
    loggers = {logging.getLogger(): logging.INFO, logging.getLogger("tokenrelay"): logging.DEBUG}
    saved = [(lg, lg.level) for lg in loggers]
    for lg, level in loggers.items():
        lg.addHandler(handler)
        lg.setLevel(level)
    try:
        yield handler
    finally:
        for lg, level in saved:
            lg.removeHandler(handler)
            lg.setLevel(level)


async def open_stream(
    client: httpx.AsyncClient, body: dict[str, Any], headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """Start a stream, read up to its metadata event and leave (the stream runs on when
    `disconnect_grace_s` > 0). Returns the metadata."""
    parser = SSEParser()
    async with client.stream("POST", "/api/chat/stream", json=body, headers=headers) as response:
        assert response.status_code == 200, await response.aread()
        async for chunk in response.aiter_bytes():
            for event in parser.feed(chunk):
                data: dict[str, Any] = json.loads(event.data)
                if data["type"] == "metadata":
                    return data
    raise AssertionError("the stream ended before its metadata")


@pytest.fixture
def redis_settings() -> dict[str, Any]:
    """Settings for a real Redis with a prefix of its own; skipped when Redis is not there
    (failed instead when CI is set)."""
    url = redis_url()
    try:
        import redis

        client = redis.Redis.from_url(url or "", socket_connect_timeout=2)
        client.ping()
        client.close()
    except Exception as exc:
        reason = f"no Redis at {url} ({type(exc).__name__}); set TOKENRELAY_TEST_REDIS_URL"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return {"redis_url": url, "redis_prefix": f"trtest-{uuid.uuid4().hex[:12]}"}
