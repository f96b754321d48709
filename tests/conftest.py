"""Shared fixtures: a real uvicorn server in this event loop, settings in a temp data dir."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI

from tokenrelay.config import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveServer:
    url: str
    app: FastAPI
    settings: Settings


@pytest.fixture
def settings_factory(tmp_path: Path) -> Callable[..., Settings]:
    """Settings with a temp data dir and the scripted provider unless told otherwise."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "data_dir": tmp_path / "data",
            "provider": "scripted",
            "shutdown_grace_s": 1.0,
            # lexical retrieval: tests about meaning build their embedder themselves
            "embedding_provider": "none",
        }
        values.update(overrides)
        return Settings(**values)

    return make


@contextlib.asynccontextmanager
async def run_server(settings: Settings, app: Any = None) -> AsyncIterator[LiveServer]:
    """Run the app (by default `create_app(settings)`) under a real uvicorn server on a free
    loopback port, in this loop."""
    from tokenrelay.server.app import create_app

    app = app if app is not None else create_app(settings)
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield LiveServer(url=f"http://127.0.0.1:{port}", app=app, settings=settings)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=30)


@pytest.fixture
def live_server(
    settings_factory: Callable[..., Settings],
) -> Callable[..., AbstractAsyncContextManager[LiveServer]]:
    """`async with live_server(**settings_overrides) as srv:` -> srv.url, srv.app."""

    def start(**overrides: Any) -> AbstractAsyncContextManager[LiveServer]:
        return run_server(settings_factory(**overrides))

    return start


def postgres_url() -> str:
    return os.environ.get(
        "TOKENRELAY_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
    )


def redis_url() -> str:
    return os.environ.get("TOKENRELAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def unavailable(what: str, exc: BaseException) -> None:
    """Skip when a developer runs the suite without the service; fail in CI, where it must be."""
    message = f"{what} is not reachable ({exc!r}); set its TOKENRELAY_TEST_* URL or start it"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
async def redis_settings() -> AsyncIterator[dict[str, Any]]:
    """Settings overrides for a real Redis, under a key prefix of this test's own."""
    import redis.asyncio as aioredis

    url = redis_url()
    client = aioredis.Redis.from_url(url)
    try:
        await client.ping()
    except Exception as exc:
        await client.aclose()
        unavailable("Redis", exc)
    prefix = f"trtest{uuid.uuid4().hex[:10]}"
    try:
        yield {"redis_url": url, "redis_prefix": prefix}
    finally:
        keys = [k async for k in client.scan_iter(f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


@pytest.fixture
async def postgres_settings() -> AsyncIterator[dict[str, Any]]:
    """Settings overrides for a real PostgreSQL, in a schema of this test's own."""
    import asyncpg

    url = postgres_url()
    try:
        conn = await asyncpg.connect(url, timeout=5)
    except Exception as exc:
        unavailable("PostgreSQL", exc)
    schema = f"trtest_{uuid.uuid4().hex[:10]}"
    try:
        yield {"database_url": url, "database_schema": schema}
    finally:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await conn.close()
