"""The stream runner: runs a pipeline as a task of its own, with a context to emit into.

The pipeline gets the stream's context (`streams/context.py`): its events go to the log as it
emits them, and the `done` event it returns is stored by the runner. Generation is not tied to
any connection. Readers attach and detach; when the last reader of a
running stream goes away, the stream is cancelled after `disconnect_grace_s` unless a reader
comes back. Every stream ends with exactly one terminal event (`done` or `error`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from tokenrelay.errors import (
    ErrorCode,
    StreamCancelled,
    StreamTimeout,
    TokenRelayError,
    internal_error,
)
from tokenrelay.events import TERMINAL_TYPES, ErrorEvent
from tokenrelay.i18n import current_locale, tr
from tokenrelay.logs import log_stream_finished
from tokenrelay.metrics import Metrics
from tokenrelay.streams import timers
from tokenrelay.streams.context import Pipeline, StreamContext
from tokenrelay.streams.log import StreamLog
from tokenrelay.streams.timers import Cancellable

logger = logging.getLogger("tokenrelay.runner")

CANCEL_REASONS: dict[str, TokenRelayError] = {
    "request": StreamCancelled(
        tr("the stream was cancelled"),
        suggestion=tr("send the message again to get a new answer"),
    ),
    "disconnect": StreamCancelled(
        tr("the connection was gone for too long, so the answer was stopped"),
        suggestion=tr("send the message again to get a new answer"),
        details={
            "operator": "no reader came back within TOKENRELAY_DISCONNECT_GRACE_S; raise it to"
            " keep answers alive for longer"
        },
    ),
    "shutdown": TokenRelayError(
        tr("this server is shutting down"),
        suggestion=tr("reconnect with Last-Event-ID to resume, or resend the message"),
        code=ErrorCode.BACKEND_UNAVAILABLE,
        retryable=True,
    ),
}


def deadline_error(seconds: float) -> StreamTimeout:
    """The error of a stream stopped at its deadline (`stream_deadline_s`)."""
    return StreamTimeout(
        tr("the answer took longer than the {seconds:g} s limit", seconds=seconds),
        suggestion=tr("ask for a shorter answer"),
        details={"operator": "the limit is TOKENRELAY_STREAM_DEADLINE_S"},
    )


class _Running(StreamContext):
    """The runner's record of one running stream, and the context its pipeline gets."""

    __slots__ = (
        "_runner",
        "cancel_at",
        "cancel_reason",
        "deadline_timer",
        "grace",
        "meta",
        "observed",
        "owner",
        "readers",
        "task",
    )

    def __init__(
        self, runner: StreamRunner, stream_id: str, deadline: float, owner: str | None
    ) -> None:
        # emit: the log's lane, which hands what is not a token to `_store`
        super().__init__(stream_id, deadline, runner._log.lane(stream_id, self._store))
        self._runner = runner
        self.task: asyncio.Task[None] | None = None
        self.readers = 0
        self.grace: asyncio.TimerHandle | None = None
        self.cancel_reason: str | None = None
        self.cancel_at = 0.0
        self.observed = False  # cancel latency recorded
        self.owner = owner
        self.deadline_timer: Cancellable | None = None  # stream_deadline_s: cancels "deadline"
        self.meta: _MetaFields | None = None  # from the `metadata` event, for the log line

    def _store(self, event: Any) -> None:
        if event.type in TERMINAL_TYPES:
            raise RuntimeError("a pipeline returns its done event; the runner stores it")
        if event.type == "metadata":  # for the log line; not the whole model
            self.meta = _MetaFields(event.trace_id, event.session_id, event.provider, event.model)
        self._runner._log.emit(self.stream_id, event)

    @property
    def cancelled(self) -> bool:
        return self.cancel_reason is not None

    def generation_stopped(self) -> None:
        if self.cancel_reason not in (None, "deadline") and not self.observed:
            self.observed = True
            self._runner._metrics.cancel_latency.observe(time.monotonic() - self.cancel_at)


class StreamRunner:
    def __init__(
        self,
        log: StreamLog,
        *,
        deadline_s: float,
        disconnect_grace_s: float,
        metrics: Metrics | None = None,
    ) -> None:
        self._log = log
        self._deadline_s = deadline_s
        self._grace_s = disconnect_grace_s
        self._metrics = metrics or Metrics()
        self._running: dict[str, _Running] = {}
        self.accepting = True
        self._drain_timer: asyncio.TimerHandle | None = None
        self._checks: set[asyncio.Task[None]] = set()
        log.on_cancel_request(self._cancel_requested_elsewhere)

    @property
    def active(self) -> int:
        return len(self._running)

    def is_running(self, stream_id: str) -> bool:
        return stream_id in self._running

    async def start(
        self,
        stream_id: str,
        pipeline: Pipeline,
        *,
        owner: str | None = None,
        session_id: str | None = None,
    ) -> None:
        # the stream's language: what its readers say themselves is said in it (resume.py)
        await self._log.create(
            stream_id, owner=owner, session_id=session_id, locale=current_locale()
        )
        deadline = time.monotonic() + self._deadline_s
        running = _Running(self, stream_id, deadline, owner)
        # unnamed: a name string per open stream is memory an idle stream keeps (the stream
        # id is in every log line the task writes)
        running.task = asyncio.create_task(self._run(running, pipeline))
        self._running[stream_id] = running
        # a coarse timeout, not an asyncio.timeout() scope (a third of the memory per stream)
        running.deadline_timer = timers.call_later(
            self._deadline_s, self._cancel, running, "deadline"
        )
        self._metrics.active_streams.inc()

    def attach(self, stream_id: str) -> None:
        running = self._running.get(stream_id)
        if running is None:
            return
        running.readers += 1
        if running.grace is not None:
            running.grace.cancel()
            running.grace = None

    def detach(self, stream_id: str, *, finished: bool) -> None:
        running = self._running.get(stream_id)
        if running is None:
            return
        running.readers -= 1
        if finished or running.readers > 0 or not self.accepting:
            return  # while draining, readers leave to resume elsewhere: generation goes on
        self._metrics.disconnects.inc()
        if self._grace_s <= 0:
            self._cancel(running, "disconnect")
        else:
            self._arm_grace(stream_id, running)

    def _arm_grace(self, stream_id: str, running: _Running) -> None:
        running.grace = asyncio.get_running_loop().call_later(
            self._grace_s, self._spawn_grace_check, stream_id
        )

    def _spawn_grace_check(self, stream_id: str) -> None:
        task = asyncio.create_task(self._grace_expired(stream_id))
        self._checks.add(task)
        task.add_done_callback(self._checks.discard)

    async def _grace_expired(self, stream_id: str) -> None:
        running = self._running.get(stream_id)
        if running is None or running.readers > 0:
            return
        if await self._log.has_remote_readers(stream_id):
            self._arm_grace(stream_id, running)  # followed from another replica: keep it
            return
        self._cancel(running, "disconnect")

    async def cancel(self, stream_id: str, reason: str = "request") -> bool:
        """Cancel a stream, here or on the replica that generates it; True if it was running."""
        running = self._running.get(stream_id)
        if running is None:
            return await self._log.request_cancel(stream_id)
        self._cancel(running, reason)
        if running.task is not None:
            await asyncio.wait({running.task})
        return True

    async def _cancel_requested_elsewhere(self, stream_id: str) -> None:
        running = self._running.get(stream_id)
        if running is not None:
            self._cancel(running, "request")

    def begin_drain(self, grace_s: float, *, release_readers: bool) -> None:
        """Stop accepting new streams; cancel what still runs after `grace_s`.

        With a shared log, readers are released at once so that clients resume on another
        replica while generation finishes here; with an in-process log they stay connected.
        """
        if not self.accepting:
            return
        self.accepting = False
        if release_readers:
            self._log.release_readers()
        self._drain_timer = asyncio.get_running_loop().call_later(
            grace_s, self._cancel_all, "shutdown"
        )

    def _cancel_all(self, reason: str) -> None:
        for running in list(self._running.values()):
            self._cancel(running, reason)

    def _cancel(self, running: _Running, reason: str) -> None:
        if running.cancel_reason is None:
            running.cancel_reason = reason
            running.cancel_at = time.monotonic()
            if running.task is not None:
                running.task.cancel()

    async def shutdown(self, grace_s: float) -> None:
        """Stop accepting; let running streams finish for `grace_s`, then cancel the rest."""
        self.accepting = False
        tasks = [r.task for r in self._running.values() if r.task is not None]
        if tasks and grace_s > 0:
            await asyncio.wait(tasks, timeout=grace_s)
        self._cancel_all("shutdown")
        remaining = [r.task for r in self._running.values() if r.task is not None]
        if remaining:
            await asyncio.wait(remaining, timeout=10)
        if self._drain_timer is not None:
            self._drain_timer.cancel()

    async def _run(self, running: _Running, pipeline: Pipeline) -> None:
        stream_id = running.stream_id
        started = time.monotonic()
        last: Any = None
        failure: TokenRelayError | None = None
        try:
            try:
                last = await pipeline(running)
                if getattr(last, "type", None) in TERMINAL_TYPES:
                    self._log.emit(stream_id, last)
                else:
                    last = None
            finally:
                close = getattr(pipeline, "aclose", None)
                if close is not None:
                    await asyncio.shield(close())
        except asyncio.CancelledError:
            reason = running.cancel_reason
            if reason is None:  # cancelled from outside the runner: the loop is going away
                reason = "shutdown"
            if reason == "deadline":
                failure = deadline_error(self._deadline_s)
                logger.warning(
                    "stream %s stopped at its deadline of %g s (TOKENRELAY_STREAM_DEADLINE_S)",
                    stream_id,
                    self._deadline_s,
                )
            else:
                failure = CANCEL_REASONS[reason]
                if reason == "disconnect":
                    logger.info(
                        "stream %s stopped: no reader for %g s (TOKENRELAY_DISCONNECT_GRACE_S)",
                        stream_id,
                        self._grace_s,
                    )
            running.generation_stopped()
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
        except TokenRelayError as exc:
            failure = exc
        except Exception as exc:
            logger.exception("stream %s failed", stream_id)
            failure = internal_error(exc)
        finally:
            self._running.pop(stream_id, None)
            running.emit = _ended  # the lane holds `_store`: no cycle outlives the stream
            if running.deadline_timer is not None:
                running.deadline_timer.cancel()
            self._metrics.active_streams.dec()
        if last is None:
            failure = failure or internal_error(RuntimeError("pipeline ended without done"))
            self._metrics.streams.labels("error", failure.code.value).inc()
            last = ErrorEvent.from_error(failure)
            self._log.emit(stream_id, last)
        else:
            self._metrics.streams.labels(last.type, getattr(last, "code", "")).inc()
        _log_finished(stream_id, running.meta, last, time.monotonic() - started, running)


def _ended(event: object) -> None:
    raise RuntimeError("an event emitted after its pipeline ended")


@dataclass(frozen=True, slots=True)
class _MetaFields:
    trace_id: str
    session_id: str | None
    provider: str
    model: str | None


def _log_finished(
    stream_id: str, meta: _MetaFields | None, last: Any, duration_s: float, running: _Running
) -> None:
    """One structured log line per finished stream (no message contents, no keys)."""
    usage = getattr(last, "usage", None)
    code = getattr(last, "code", None)
    outcome = "done" if last.type == "done" else ("cancelled" if code == "CANCELLED" else "error")
    if code == "TIMEOUT":
        outcome = "timeout"
    log_stream_finished(
        trace_id=getattr(meta, "trace_id", ""),
        stream_id=stream_id,
        session_id=getattr(meta, "session_id", None) or None,
        owner=running.owner,
        provider=getattr(meta, "provider", ""),
        model=getattr(meta, "model", None),
        outcome=outcome,
        error_code=code,
        prompt_tokens=getattr(usage, "prompt_tokens", 0),
        completion_tokens=getattr(usage, "completion_tokens", 0),
        ttft_s=getattr(last, "ttft_s", None),
        duration_s=duration_s,
    )
