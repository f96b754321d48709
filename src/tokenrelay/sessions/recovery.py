"""Crash recovery: answers left `streaming` by a replica that died become `interrupted`.

Each process is a replica with a random id (`Services.replica_id`). An answer's placeholder
records its stream and its replica (sessions/base.py); the replica upserts a heartbeat row in
the session database every `replica_heartbeat_s` (one write per period per process, not per
stream) and deletes it on a clean shutdown. A sweep, at start-up and every few heartbeats,
finds the answers whose replica has no heartbeat, or one older than `STALE_PERIODS` periods,
and marks each `interrupted` with the longest text there is: the stream log's token events
(every token a client could have received, from Redis when the log is shared), else the
placeholder's last checkpoint (`answer_checkpoint_s`, pipelines/chat.py).

This works the same on SQLite and PostgreSQL, with or without Redis. With SQLite there is
one process per database, so at start every other replica is dead: a restart after
`kill -9` recovers at once, without waiting for a heartbeat to grow old.

A stream a reader declares lost (streams/redis.py) is left to this sweep: its replica stopped
beating, so the next sweep on any replica finds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

import orjson

from tokenrelay.events import Envelope
from tokenrelay.sessions.base import Orphan, SessionStore
from tokenrelay.streams.log import StreamLog

logger = logging.getLogger("tokenrelay.recovery")

STALE_PERIODS = 3  # a replica is dead when its heartbeat is this many periods old
SWEEP_EVERY = 3  # heartbeats between two sweeps
REASON = "replica_lost"


def answer_text(events: Sequence[Envelope]) -> str:
    """The text of the answer being written, from a stream's events (pure): its token events'
    content after the last server tool's result (the text before it is stored with its tool
    round, pipelines/chat.py; a client tool's `tool_call` ends no round)."""
    parts: list[str] = []
    for env in events:
        if env.type == "token":
            parts.append(orjson.loads(env.data)["content"])
        elif env.type == "tool_result":
            parts.clear()
    return "".join(parts)


async def recover(
    sessions: SessionStore,
    log: StreamLog,
    replica_id: str,
    *,
    stale_after_s: float | None,
) -> int:
    """One sweep: every orphan seen from `replica_id` becomes `interrupted` with the longer of
    its log's text and its checkpoint; returns how many. An orphan whose log cannot be read
    now (Redis unreachable) waits for the next sweep rather than lose its text."""
    recovered = 0
    for orphan in await sessions.orphans(replica_id, stale_after_s=stale_after_s):
        try:
            text = await _log_text(log, orphan)
        except Exception:
            logger.warning("recovery: stream %s unreadable, later", orphan.stream_id, exc_info=True)
            continue
        content = text if len(text) >= len(orphan.content) else orphan.content
        if await sessions.interrupt(orphan.message_id, content, REASON):
            recovered += 1
            logger.info(
                "recovered answer %s of stream %s (%d chars)",
                orphan.message_id,
                orphan.stream_id,
                len(content),
            )
    await sessions.prune_replicas(replica_id, stale_after_s=stale_after_s)
    return recovered


async def _log_text(log: StreamLog, orphan: Orphan) -> str:
    if orphan.stream_id is None:
        return ""
    return answer_text(await log.snapshot(orphan.stream_id))


class Heartbeat:
    """This replica's heartbeat and periodic sweep, as one task."""

    def __init__(
        self,
        sessions: SessionStore,
        log: StreamLog,
        replica_id: str,
        *,
        period_s: float,
        single_process: bool,
    ) -> None:
        self._sessions = sessions
        self._log = log
        self.replica_id = replica_id
        self._period_s = period_s
        self._single = single_process
        self._task: asyncio.Task[None] | None = None

    @property
    def stale_after_s(self) -> float:
        return STALE_PERIODS * self._period_s

    async def start(self) -> None:
        """Beat, sweep (every other replica is dead when this is the only process), then keep
        beating. A failure here stops the start: the database is unreachable."""
        await self._sessions.beat(self.replica_id)
        await recover(
            self._sessions,
            self._log,
            self.replica_id,
            stale_after_s=None if self._single else self.stale_after_s,
        )
        self._task = asyncio.create_task(self._run(), name="replica-heartbeat")

    async def _run(self) -> None:
        beats = 0
        while True:
            await asyncio.sleep(self._period_s)
            beats += 1
            try:
                await self._sessions.beat(self.replica_id)
                if beats % SWEEP_EVERY == 0:
                    await recover(
                        self._sessions,
                        self._log,
                        self.replica_id,
                        stale_after_s=self.stale_after_s,
                    )
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("replica heartbeat or sweep failed; retrying", exc_info=True)

    async def aclose(self) -> None:
        """A clean shutdown (after the runner has finished its streams): stop, forget the row."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            await self._sessions.forget_replica(self.replica_id)
        except Exception:
            logger.warning("could not remove this replica's heartbeat", exc_info=True)
