"""Limits at the door, as one pure ASGI middleware, and the stream slot the routes take.

`LimitsMiddleware`, per request and before any route code runs:
- body size: `Content-Length` over the limit → 413 at once; a chunked body is counted as it is
  read and cut off at the limit (413, code VALIDATION_ERROR);
- (header size and count are checked before any middleware, in `server/front.py`, with
  `headers_over_limit` below: 431);
- request rate per client (API key, or IP without keys) on `/api/` and `/v1/` → 429 RATE_LIMIT
  with `Retry-After`;
- open streams per process: a request that would start a stream while `max_open_streams` run
  here → 503 BACKEND_UNAVAILABLE with `Retry-After` (running streams are never touched; a load
  balancer can send the retry to another replica). A request resumes instead of starting
  only when its Last-Event-ID (header or `last_event_id`) is a well-formed event id: the
  route decides with the same function (`resume_id`), so no form of it skips the cap. A
  request that reads a stream (a resume) is admitted the same way: open readings count
  (`sse.open_streams`, `reads_stream`).

`limited_pipeline(request, pipeline)` is the per-client running-stream limit: the route calls it
before `runner.start`, gets 429 when the client already runs `max_streams_per_client` streams,
and hands the wrapped pipeline to the runner, which releases the slot when the stream ends.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tokenrelay.config import Settings
from tokenrelay.errors import ErrorCode, TokenRelayError, ValidationError
from tokenrelay.events import parse_event_id
from tokenrelay.i18n import tr
from tokenrelay.limits import Limiter
from tokenrelay.server.asgi import (
    MetricsGetter,
    count_rejected,
    header,
    scope_state,
    send_error,
    subject_of,
)
from tokenrelay.server.security import send_error_for
from tokenrelay.streams.context import Pipeline, StreamContext

logger = logging.getLogger("tokenrelay.limits")

RATE_LIMITED_PREFIXES = ("/api/", "/v1/")
LARGE_BODY_PREFIXES = ("/api/documents",)  # uploads: rag_max_upload_bytes
# (method, path) of the requests that start a new stream (a GET with Last-Event-ID resumes)
STREAM_STARTERS = frozenset(
    {
        ("POST", "/api/chat/stream"),
        ("POST", "/api/chat"),
        ("POST", "/v1/chat/completions"),
        ("POST", "/v1/responses"),
        ("POST", "/api/plans/generate"),
        ("POST", "/api/plans/generate/stream"),
        ("POST", "/api/ui/chat"),
        ("GET", "/api/chat/stream"),
    }
)


class BodyTooLarge(ValidationError):
    """A request body over the limit: our VALIDATION_ERROR shape, with HTTP 413."""

    @property
    def http_status(self) -> int:
        return 413


def body_too_large(limit: int, setting: str) -> BodyTooLarge:
    return BodyTooLarge(
        tr("the request body is over the limit of {limit} bytes", limit=limit),
        suggestion=tr("send less (a shorter history, a smaller file)"),
        details={"operator": f"the limit is {setting}"},
    )


class HeadersTooLarge(ValidationError):
    """Too many request headers, or too many bytes of them: HTTP 431."""

    @property
    def http_status(self) -> int:
        return 431


def headers_over_limit(scope: Scope, max_count: int, max_bytes: int) -> HeadersTooLarge | None:
    """431 when the request has more than `max_count` headers or `max_bytes` of them."""
    headers = scope["headers"]
    if len(headers) > max_count:
        return HeadersTooLarge(
            tr(
                "the request has {count} headers; the limit is {limit}",
                count=len(headers),
                limit=max_count,
            ),
            suggestion=tr("send fewer headers"),
            details={"operator": "the limit is TOKENRELAY_MAX_HEADER_COUNT"},
        )
    size = 0
    for name, value in headers:
        size += len(name) + len(value)
    if size > max_bytes:
        return HeadersTooLarge(
            tr(
                "the request headers are {size} bytes; the limit is {limit}",
                size=size,
                limit=max_bytes,
            ),
            suggestion=tr("send shorter headers (cookies, tokens)"),
            details={"operator": "the limit is TOKENRELAY_MAX_HEADER_BYTES"},
        )
    return None


def rate_limited(retry_after_s: float) -> TokenRelayError:
    return TokenRelayError(
        tr("too many requests for this API key (or address)"),
        suggestion=tr("wait {seconds} s and retry", seconds=max(1, round(retry_after_s))),
        code=ErrorCode.RATE_LIMIT,
        retry_after_s=retry_after_s,
    )


def too_many_streams(limit: int, retry_after_s: float) -> TokenRelayError:
    return TokenRelayError(
        tr("this API key (or address) already runs {limit} streams, its limit", limit=limit),
        suggestion=tr("wait for an answer to finish, or stop one"),
        code=ErrorCode.RATE_LIMIT,
        retry_after_s=retry_after_s,
    )


def server_busy(limit: int, retry_after_s: float) -> TokenRelayError:
    return TokenRelayError(
        tr("this server is busy: it runs {limit} answers, its limit", limit=limit),
        suggestion=tr("retry in a moment"),
        code=ErrorCode.BACKEND_UNAVAILABLE,
        retry_after_s=retry_after_s,
        details={"operator": "raise TOKENRELAY_MAX_OPEN_STREAMS or add replicas"},
    )


def raw_last_event_id(scope: Scope) -> str | None:
    """The Last-Event-ID a request sent: the header when not blank, else the last
    `last_event_id` query value (EventSource cannot set headers on its first request)."""
    raw = header(scope, b"last-event-id")
    if raw is not None and raw.strip():
        return raw.decode("latin-1")
    query: bytes = scope.get("query_string", b"")
    if b"last_event_id" not in query:
        return None
    found = None
    for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if name == "last_event_id":
            found = value
    return found or None


def resume_id(scope: Scope) -> tuple[str, int] | None:
    """(stream_id, seq) when the request resumes a stream: a well-formed Last-Event-ID.
    Blank is no id; a malformed one is None here, and the route answers it with 422."""
    raw = raw_last_event_id(scope)
    if raw is None:
        return None
    try:
        return parse_event_id(raw)
    except ValueError:
        return None


def starts_stream(scope: Scope) -> bool:
    """Does this request start a new stream? (An EventSource reconnect resumes one.)"""
    method, path = scope.get("method", ""), scope.get("path", "")
    if (method, path) not in STREAM_STARTERS:
        return False
    if method == "GET":
        return resume_id(scope) is None
    return True


def reads_stream(scope: Scope) -> bool:
    """Does this request open a reading of a stream (a resume)? An open reading holds a slot
    of `max_open_streams` as a running stream does (`sse.ReaderSlots`), so it is admitted
    the same way: a flood of readers of finished streams gets the same 503."""
    if scope.get("method") != "GET":
        return False
    path: str = scope.get("path", "")
    if path.startswith("/api/ui/"):  # useChat's resume, and any stream as UI chunks
        return path.endswith("/stream") or path.startswith("/api/ui/streams/")
    return path == "/api/chat/stream" or path.startswith("/api/streams/")


@dataclass
class LimitsConfig:
    max_body_bytes: int
    max_upload_bytes: int
    max_open_streams: int  # 0: no limit
    retry_after_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> LimitsConfig:
        return cls(
            max_body_bytes=settings.max_body_bytes,
            max_upload_bytes=max(settings.max_body_bytes, settings.rag_max_upload_bytes),
            max_open_streams=settings.max_open_streams,
            retry_after_s=float(settings.overload_retry_after_s),
        )


class Admissions:
    """Stream starts admitted whose response has not begun yet. One per app, shared by every
    instance of the middleware (the app builds its chain twice: `server/app.py`)."""

    __slots__ = ("pending",)

    def __init__(self) -> None:
        self.pending = 0


class LimitsMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        limiter: Limiter,
        config: LimitsConfig,
        running_streams: Callable[[], int],
        metrics: MetricsGetter | None = None,
        admissions: Admissions | None = None,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.limiter = limiter
        self.config = config
        self.running_streams = running_streams
        self.admissions = admissions or Admissions()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, self._closing_send(send))
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        large = path.startswith(LARGE_BODY_PREFIXES)
        limit = self.config.max_upload_bytes if large else self.config.max_body_bytes
        setting = "TOKENRELAY_RAG_MAX_UPLOAD_BYTES" if large else "TOKENRELAY_MAX_BODY_BYTES"
        length = header(scope, b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            count_rejected(self.metrics, "body")
            await send_error_for(
                scope, send, body_too_large(limit, setting), {"Connection": "close"}
            )
            return
        if path.startswith(RATE_LIMITED_PREFIXES):
            decision = await self.limiter.hit(subject_of(scope))
            if not decision.allowed:
                count_rejected(self.metrics, "rate")
                await send_error_for(scope, send, rate_limited(decision.retry_after_s))
                return
        if length is None and header(scope, b"transfer-encoding") is not None:
            receive, send = _count_body(receive, send, limit, setting)
        if self.config.max_open_streams > 0 and (starts_stream(scope) or reads_stream(scope)):
            await self._admit(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _admit(self, scope: Scope, receive: Receive, send: Send) -> None:
        cap = self.config.max_open_streams
        admissions = self.admissions
        if self.running_streams() + admissions.pending >= cap:
            count_rejected(self.metrics, "busy")
            await send_error_for(scope, send, server_busy(cap, self.config.retry_after_s))
            return
        admission = _Admission(send, admissions)
        try:
            await self.app(scope, receive, admission)
        finally:
            admission.done()  # handed off (the reader sends the start later) or answered

    def _closing_send(self, send: Send) -> Send:
        async def closing_send(message: Message) -> None:
            if message["type"] == "lifespan.shutdown.complete":
                await self.limiter.aclose()
            await send(message)

        return closing_send


class _Admission:
    """A stream request counted as pending admission until its response starts or its app
    returns, once (`LimitsMiddleware._admit`); the `send` the app gets. An object, not a
    closure: a waiting stream's reader holds it until its start (server/access_log.py)."""

    __slots__ = ("admissions", "counted", "send")

    def __init__(self, send: Send, admissions: Admissions) -> None:
        self.send = send
        self.admissions = admissions
        self.counted = True
        admissions.pending += 1

    def done(self) -> None:
        if self.counted:  # by now the stream runs (and counts) or never will
            self.counted = False
            self.admissions.pending -= 1

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.done()
        await self.send(message)


DRAIN_FACTOR = 4  # past the limit, read (and drop) up to this many times it before closing


def _count_body(receive: Receive, send: Send, limit: int, setting: str) -> tuple[Receive, Send]:
    """Count a body without Content-Length; over `limit`, answer 413 whatever the app says.

    The rest of the body is read and dropped (up to DRAIN_FACTOR x limit) so that a client
    still sending sees the 413 instead of a broken connection."""
    seen = 0
    tripped = False

    async def counting_receive() -> Message:
        nonlocal seen, tripped
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                tripped = True
                more = message.get("more_body", False)
                while more and seen <= DRAIN_FACTOR * limit:
                    message = await receive()
                    seen += len(message.get("body", b""))
                    more = message["type"] == "http.request" and message.get("more_body", False)
                raise body_too_large(limit, setting)
        return message

    replaced = False

    async def guarded_send(message: Message) -> None:
        nonlocal replaced
        if tripped:
            if not replaced:
                replaced = True
                await send_error(send, body_too_large(limit, setting), {"Connection": "close"})
            return
        await send(message)

    return counting_receive, guarded_send


# -- the per-client running-stream limit, taken by the routes


@dataclass
class LimitsState:
    """What `limited_pipeline` needs; `_install_middleware` puts it on `app.state.limits`."""

    limiter: Limiter
    retry_after_s: float


class GuardedPipeline:
    """Runs the pipeline; gives the stream slot back once, however the stream ends: failed or
    cancelled (here), done (the runner's `aclose` after it stored `done`), or never started
    (the route's `aclose`)."""

    def __init__(self, inner: Pipeline, release: Callable[[], Any]) -> None:
        self._inner = inner
        self._release_cb = release
        self._released = False

    async def _release(self) -> None:
        if not self._released:
            self._released = True
            await self._release_cb()

    async def __call__(self, stream: StreamContext) -> object:
        try:
            return await self._inner(stream)
        except BaseException:
            await self._release()
            raise

    async def aclose(self) -> None:
        await self._release()


async def _take_slot(request: Request, slot: str) -> Callable[[], Awaitable[None]] | None:
    """Take the caller's per-client slot `slot` (`max_streams_per_client`), or raise 429
    RATE_LIMIT; returns what gives it back (None when streams are not limited)."""
    state: LimitsState | None = getattr(request.app.state, "limits", None)
    if state is None or not state.limiter.policy.limits_streams:
        return None
    limiter = state.limiter
    subject = subject_of(request.scope)
    if not await limiter.acquire_stream(subject, slot):
        services = getattr(request.app.state, "services", None)
        if services is not None:
            services.metrics.count_rejected("streams")
        raise too_many_streams(limiter.policy.max_streams, state.retry_after_s)

    async def release() -> None:
        await limiter.release_stream(subject, slot)

    return release


async def limited_pipeline(request: Request, pipeline: Pipeline) -> Pipeline:
    """Take a running-stream slot for the caller, or raise 429 RATE_LIMIT (before the stream
    starts). Returns `pipeline` wrapped so the slot is released when the stream ends; if the
    runner never starts it, call `aclose()` on the result."""
    slot = uuid.uuid4().hex
    release = await _take_slot(request, slot)
    if release is None:
        return pipeline
    scope_state(request.scope)["stream_slot"] = slot
    return GuardedPipeline(pipeline, release)


async def reading_slot(request: Request) -> Callable[[], Awaitable[None]] | None:
    """Take a per-client slot (`max_streams_per_client`) for a reading that no running
    stream of this replica carries (a replay of a finished stream), or raise 429 RATE_LIMIT.
    Returns what gives it back when the reading ends (None when streams are not limited);
    a client resuming its own running stream rides on that stream's slot and needs none."""
    return await _take_slot(request, f"read-{uuid.uuid4().hex}")
