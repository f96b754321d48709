"""The long-lived parts of a running tokenrelay, built once at start-up and closed at shutdown."""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from typing import Any

from tokenrelay.config import Settings
from tokenrelay.metrics import Metrics
from tokenrelay.providers.registry import ProviderRegistry
from tokenrelay.sessions.base import SessionStore
from tokenrelay.streams.log import MemoryStreamLog, StreamLog
from tokenrelay.streams.runner import StreamRunner


async def _open_documents(settings: Settings) -> Any:
    """The document store, when the retrieval layer is present."""
    if importlib.util.find_spec("tokenrelay.retrieval.factory") is None:
        return None
    factory = importlib.import_module("tokenrelay.retrieval.factory")
    return await factory.open_document_store(settings)


@dataclass
class Services:
    settings: Settings
    providers: ProviderRegistry
    sessions: SessionStore
    log: StreamLog
    runner: StreamRunner
    metrics: Metrics
    documents: Any = None  # retrieval.DocumentStore when retrieval is available

    @classmethod
    async def open(cls, settings: Settings) -> Services:
        from tokenrelay.sessions.sqlite import SQLiteSessionStore

        metrics = Metrics()
        sessions: SessionStore = await SQLiteSessionStore.open(settings.sqlite_path)
        log: StreamLog = MemoryStreamLog(ttl_s=settings.stream_ttl_s)
        runner = StreamRunner(
            log,
            deadline_s=settings.stream_deadline_s,
            disconnect_grace_s=settings.disconnect_grace_s,
            metrics=metrics,
        )
        return cls(
            settings=settings,
            providers=ProviderRegistry(settings),
            sessions=sessions,
            log=log,
            runner=runner,
            metrics=metrics,
            documents=await _open_documents(settings),
        )

    async def aclose(self) -> None:
        await self.runner.shutdown(grace_s=0)
        await self.providers.aclose()
        await self.log.aclose()
        await self.sessions.aclose()
        close = getattr(self.documents, "close", None)
        if close is not None:
            await close()
