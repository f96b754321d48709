"""Shared fixtures: a real uvicorn server in this event loop, settings in a temp data dir."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
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
        values: dict[str, Any] = {"data_dir": tmp_path / "data", "provider": "scripted"}
        values.update(overrides)
        return Settings(**values)

    return make


@contextlib.asynccontextmanager
async def run_server(settings: Settings) -> AsyncIterator[LiveServer]:
    """Run the app under a real uvicorn server on a free loopback port, in this loop."""
    from tokenrelay.server.app import create_app

    app = create_app(settings)
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


def postgres_url() -> str | None:
    return os.environ.get(
        "TOKENRELAY_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
    )


def redis_url() -> str | None:
    return os.environ.get("TOKENRELAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
