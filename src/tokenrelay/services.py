"""The long-lived parts of a running tokenrelay, built once at start-up and closed at shutdown."""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from typing import Any

from tokenrelay.config import Settings
from tokenrelay.metrics import Metrics
from tokenrelay.providers.registry import ProviderRegistry
from tokenrelay.sessions.base import SessionStore, new_id
from tokenrelay.sessions.recovery import Heartbeat
from tokenrelay.sessions.sqlite import SQLiteSessionStore
from tokenrelay.streams.log import MemoryStreamLog, StreamLog
from tokenrelay.streams.redis import RedisStreamLog
from tokenrelay.streams.runner import StreamRunner


async def _open_sessions(settings: Settings) -> SessionStore:
    if settings.database_url:
        # lazy: the store imports asyncpg (the `postgres` extra), only when a URL is set
        from tokenrelay.sessions.postgres import PostgresSessionStore

        return await PostgresSessionStore.open(
            settings.database_url, schema=settings.database_schema
        )
    return await SQLiteSessionStore.open(settings.sqlite_path)


async def _open_log(settings: Settings) -> StreamLog:
    if settings.redis_url:
        return await RedisStreamLog.connect(
            settings.redis_url,
            ttl_s=settings.stream_ttl_s,
            max_len=settings.redis_stream_maxlen,
            max_age_s=settings.stream_deadline_s + settings.stream_ttl_s,
            prefix=settings.redis_prefix,
            lease_s=settings.stream_lease_s,
        )
    return MemoryStreamLog(ttl_s=settings.stream_ttl_s)


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
    # this process among the replicas: its answers' placeholders carry it (sessions/recovery.py)
    replica_id: str = ""
    heartbeat: Heartbeat | None = None

    @classmethod
    async def open(cls, settings: Settings) -> Services:
        metrics = Metrics(enabled=settings.metrics_enabled)
        sessions = await _open_sessions(settings)
        try:
            log = await _open_log(settings)
        except BaseException:
            await sessions.aclose()
            raise
        replica_id = new_id()
        heartbeat = Heartbeat(
            sessions,
            log,
            replica_id,
            period_s=settings.replica_heartbeat_s,
            single_process=settings.database_url is None,  # SQLite: one process per file
        )
        try:
            await heartbeat.start()  # and the start-up sweep
        except BaseException:
            await log.aclose()
            await sessions.aclose()
            raise
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
            replica_id=replica_id,
            heartbeat=heartbeat,
        )

    @property
    def shared_log(self) -> bool:
        return self.settings.redis_url is not None

    def begin_drain(self) -> None:
        """SIGTERM: refuse new streams; readers move to other replicas when the log is shared."""
        self.runner.begin_drain(self.settings.shutdown_grace_s, release_readers=self.shared_log)

    async def aclose(self) -> None:
        await self.runner.shutdown(grace_s=self.settings.shutdown_grace_s)
        if self.heartbeat is not None:  # every answer of this replica is stored by now
            await self.heartbeat.aclose()
        await self.providers.aclose()
        await self.log.aclose()
        await self.sessions.aclose()
        close = getattr(self.documents, "close", None)
        if close is not None:
            await close()
