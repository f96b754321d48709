"""Running the app under uvicorn, with a drain on SIGTERM (see docs/deployment.md)."""

from __future__ import annotations

import asyncio
from types import FrameType

import uvicorn

from tokenrelay.config import Settings
from tokenrelay.server.app import create_app


class DrainingServer(uvicorn.Server):
    """On SIGTERM/SIGINT, first tell the app to drain, then let uvicorn shut down.

    Draining refuses new streams (503, retryable) and, with a shared log, lets clients resume
    on another replica while this one finishes generating for `shutdown_grace_s`.
    """

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        app = self.config.loaded_app
        services = getattr(getattr(getattr(app, "app", app), "state", None), "services", None)
        loop = getattr(self, "_tokenrelay_loop", None)
        if services is not None and loop is not None:
            loop.call_soon_threadsafe(services.begin_drain)
        super().handle_exit(sig, frame)

    async def startup(self, sockets: list[object] | None = None) -> None:  # type: ignore[override]
        self._tokenrelay_loop = asyncio.get_running_loop()
        await super().startup(sockets=sockets)  # type: ignore[arg-type]


def run(settings: Settings) -> None:
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        timeout_graceful_shutdown=int(settings.shutdown_grace_s) + 5,
    )
    DrainingServer(config).run()
