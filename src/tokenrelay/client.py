"""Python client for tokenrelay's native API, over httpx + httpx-sse.

    async with AsyncClient("http://127.0.0.1:8000") as client:
        async for event in client.stream_chat("안녕하세요"):
            if event.type == "token":
                print(event.content, end="")

`stream_chat` returns a stream object: iterate it for typed events (`tokenrelay.events`). A
stream that loses its connection resumes by itself from the last event id it saw (on any
replica that reads the shared log), so no event is lost or repeated; once `max_resumes` is used
up the network error is raised, and `stream.resume()` continues from the same place later.
Errors the server reports, before the stream (HTTP) or as its `error` event, are raised as
`TokenRelayAPIError` subclasses that carry our stable code.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import httpx
from httpx_sse import EventSource, ServerSentEvent, aconnect_sse, connect_sse

from tokenrelay.events import (
    DoneEvent,
    ErrorEvent,
    Event,
    MetadataEvent,
    SourceDocument,
    ToolCallEvent,
    parse_event,
    parse_event_id,
)

DEFAULT_URL = "http://127.0.0.1:8000"
CHAT_PATH = "/api/chat/stream"
_NETWORK_ERRORS = (httpx.TransportError, httpx.RemoteProtocolError)


# -- errors -----------------------------------------------------------------------------------


class TokenRelayAPIError(Exception):
    """An error reported by the server: before the stream (HTTP) or as its `error` event."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        suggestion: str = "",
        retryable: bool = False,
        status: int | None = None,
        retry_after_s: float | None = None,
        stream_id: str | None = None,
        details: Any = None,
    ) -> None:
        super().__init__(f"{code}: {message}" + (f" ({suggestion})" if suggestion else ""))
        self.code = code
        self.message = message
        self.suggestion = suggestion
        self.retryable = retryable
        self.status = status
        self.retry_after_s = retry_after_s
        self.stream_id = stream_id
        self.details = details

    @classmethod
    def from_event(cls, event: ErrorEvent, stream_id: str | None = None) -> TokenRelayAPIError:
        return api_error(
            event.code,
            event.message,
            suggestion=event.suggestion,
            retryable=event.retryable,
            retry_after_s=event.retry_after_s,
            stream_id=stream_id,
            details=event.details,
        )

    @classmethod
    def from_response(cls, response: httpx.Response) -> TokenRelayAPIError:
        try:
            body = response.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        retry_after = body.get("retry_after_s") or response.headers.get("retry-after")
        return api_error(
            str(body.get("code", f"HTTP_{response.status_code}")),
            str(body.get("message", response.reason_phrase)),
            suggestion=str(body.get("suggestion", "")),
            retryable=bool(body.get("retryable", False)),
            status=response.status_code,
            retry_after_s=float(retry_after) if retry_after else None,
            details=body.get("details"),
        )


class InvalidRequestError(TokenRelayAPIError):
    """VALIDATION_ERROR, CONTEXT_TOO_LONG: change the request."""


class AuthenticationError(TokenRelayAPIError):
    """UNAUTHORIZED: send a valid API key."""


class NotFoundError(TokenRelayAPIError):
    """SESSION_NOT_FOUND, STREAM_NOT_FOUND, DOCUMENT_NOT_FOUND."""


class SessionBusyError(TokenRelayAPIError):
    """SESSION_BUSY: the session is still answering its previous message (one turn at a
    time). Wait and retry, or cancel the running answer: its stream is `running_stream_id`."""

    @property
    def running_stream_id(self) -> str | None:
        found = self.details.get("stream_id") if isinstance(self.details, dict) else None
        return str(found) if found else None


class RateLimitError(TokenRelayAPIError):
    """RATE_LIMIT, PROVIDER_RATE_LIMIT: wait `retry_after_s` and retry."""


class ProviderAPIError(TokenRelayAPIError):
    """PROVIDER_ERROR, PROVIDER_UNAVAILABLE, PROVIDER_AUTH: the model provider failed."""


class StreamTimeoutError(TokenRelayAPIError):
    """TIMEOUT: no model output for too long, or the stream's deadline passed."""


class StreamCancelledError(TokenRelayAPIError):
    """CANCELLED: someone cancelled the stream, or its reader left."""


class ServerError(TokenRelayAPIError):
    """INTERNAL_ERROR, BACKEND_UNAVAILABLE and codes this client does not know."""


ERROR_CLASSES: dict[str, type[TokenRelayAPIError]] = {
    "VALIDATION_ERROR": InvalidRequestError,
    "CONTEXT_TOO_LONG": InvalidRequestError,
    "UNAUTHORIZED": AuthenticationError,
    "SESSION_NOT_FOUND": NotFoundError,
    "SESSION_BUSY": SessionBusyError,
    "STREAM_NOT_FOUND": NotFoundError,
    "DOCUMENT_NOT_FOUND": NotFoundError,
    "RATE_LIMIT": RateLimitError,
    "PROVIDER_RATE_LIMIT": RateLimitError,
    "PROVIDER_ERROR": ProviderAPIError,
    "PROVIDER_UNAVAILABLE": ProviderAPIError,
    "PROVIDER_AUTH": ProviderAPIError,
    "TIMEOUT": StreamTimeoutError,
    "CANCELLED": StreamCancelledError,
}


def api_error(code: str, message: str, **kwargs: Any) -> TokenRelayAPIError:
    """The error class for `code`, built with the server's message and fix."""
    return ERROR_CLASSES.get(code, ServerError)(code, message, **kwargs)


# -- results ----------------------------------------------------------------------------------


@dataclass
class ChatResult:
    content: str
    session_id: str
    message_id: str
    stream_id: str
    done: DoneEvent
    events: list[Event] = field(default_factory=list)

    @property
    def finish_reason(self) -> str:
        return self.done.finish_reason

    @property
    def tool_calls(self) -> list[ToolCallEvent]:
        return [e for e in self.events if isinstance(e, ToolCallEvent)]

    @property
    def sources(self) -> list[SourceDocument]:
        found = [e.documents for e in self.events if e.type == "sources"]
        return found[-1] if found else []


def _collect(events: list[Event]) -> ChatResult:
    """Fold a finished stream's events into its result (pure)."""
    meta = next((e for e in events if isinstance(e, MetadataEvent)), None)
    last = events[-1] if events else None
    if isinstance(last, ErrorEvent):
        raise TokenRelayAPIError.from_event(last, meta.stream_id if meta else None)
    if not isinstance(last, DoneEvent) or meta is None:
        raise ServerError("INTERNAL_ERROR", "the stream ended without a done event")
    content = "".join(e.content for e in events if e.type == "token")
    return ChatResult(
        content=content,
        session_id=last.session_id,
        message_id=last.message_id,
        stream_id=meta.stream_id,
        done=last,
        events=events,
    )


def _regenerate_path(session_id: str) -> str:
    return f"/api/sessions/{session_id}/regenerate"


def _edit_path(session_id: str, message_id: str) -> str:
    return f"/api/sessions/{session_id}/messages/{message_id}/edit"


def _options_body(options: dict[str, Any] | None, **fields: Any) -> dict[str, Any]:
    return {**fields, "options": options} if options else fields


def _chat_body(
    message: str, session_id: str | None, options: dict[str, Any] | None
) -> dict[str, Any]:
    body: dict[str, Any] = {"message": message}
    if session_id:
        body["session_id"] = session_id
    if options:
        body["options"] = options
    return body


# -- stream position --------------------------------------------------------------------------


class _Cursor:
    """Where a stream is: its id and the last event seen; decides what to request next."""

    def __init__(self, path: str, body: dict[str, Any] | None) -> None:
        self.path = path
        self.body = body
        self.stream_id: str | None = None
        self.last_event_id: str | None = None
        self.finished = False
        self.retry_ms: int | None = None

    def see(self, sse: ServerSentEvent) -> Event | None:
        """The event of one SSE frame; None for frames without data (e.g. after a `: ping`)."""
        if sse.retry is not None:
            self.retry_ms = sse.retry
        if not sse.data:
            return None
        if sse.id:
            self.last_event_id = sse.id
            self.stream_id = parse_event_id(sse.id)[0]
        event = parse_event(sse.data)
        if isinstance(event, MetadataEvent) and self.stream_id is None:
            self.stream_id = event.stream_id
        if event.type in ("done", "error"):
            self.finished = True
        return event

    def request(self) -> tuple[str, str, dict[str, Any]]:
        """(method, path, httpx kwargs) of the next connection: start, or resume."""
        if self.stream_id is None:
            return "POST", self.path, {"json": self.body}
        headers = {"Last-Event-ID": self.last_event_id} if self.last_event_id else {}
        return "GET", f"/api/streams/{self.stream_id}", {"headers": headers}

    def pause_s(self, attempt: int) -> float:
        """How long to wait before resume `attempt` (1, 2, …): at once first, then backing off."""
        if attempt <= 1:
            return 0.0
        base = (self.retry_ms or 500) / 1000.0
        return float(min(base * 2 ** (attempt - 2), 5.0))


def _lost(cursor: _Cursor) -> TokenRelayAPIError:
    return ServerError(
        "INTERNAL_ERROR", "the stream closed before its first event", stream_id=cursor.stream_id
    )


# -- streams ----------------------------------------------------------------------------------


class _StreamPosition:
    """Where a stream (sync or async) stands: its id, the last event id, whether it ended."""

    _cursor: _Cursor

    @property
    def stream_id(self) -> str | None:
        return self._cursor.stream_id

    @property
    def last_event_id(self) -> str | None:
        return self._cursor.last_event_id

    @property
    def finished(self) -> bool:
        return self._cursor.finished


class AsyncChatStream(_StreamPosition):
    """The events of one stream (`async for`), resuming after dropped connections."""

    def __init__(self, http: httpx.AsyncClient, cursor: _Cursor, max_resumes: int) -> None:
        self._http = http
        self._cursor = cursor
        self._max_resumes = max_resumes
        self._events = self._run()

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._events

    async def __anext__(self) -> Event:
        return await self._events.__anext__()

    def resume(self) -> AsyncChatStream:
        """Continue from the last event seen (after the retries were used up, or a break)."""
        if self._cursor.stream_id is None:
            raise ServerError("STREAM_NOT_FOUND", "nothing to resume: the stream never started")
        self._events = self._run()
        return self

    async def cancel(self) -> bool:
        """Stop generation on the server (the stream then ends with `error` CANCELLED)."""
        if self._cursor.stream_id is None:
            return False
        response = await self._http.post(f"/api/streams/{self._cursor.stream_id}/cancel")
        _check(response)
        return bool(response.json().get("cancelled"))

    async def aclose(self) -> None:
        await self._events.aclose()

    async def final(self) -> ChatResult:
        """Read to the end and fold everything into a ChatResult (raises on `error`)."""
        return _collect([event async for event in self])

    def _connect(self) -> AbstractAsyncContextManager[EventSource]:
        method, path, kwargs = self._cursor.request()
        return aconnect_sse(self._http, method, path, **kwargs)

    async def _run(self) -> AsyncGenerator[Event, None]:
        cursor = self._cursor
        attempt = 0
        while not cursor.finished:
            try:
                async with self._connect() as source:
                    if source.response.status_code >= 400:
                        await source.response.aread()
                        _check(source.response)
                    async for sse in source.aiter_sse():
                        event = cursor.see(sse)
                        if event is not None:
                            attempt = 0
                            yield event
                        if cursor.finished:
                            return
            except _NETWORK_ERRORS:
                if cursor.stream_id is None or attempt >= self._max_resumes:
                    raise
            if cursor.stream_id is None:
                raise _lost(cursor)
            attempt += 1
            if attempt > self._max_resumes:
                raise ServerError("INTERNAL_ERROR", "the stream keeps closing before its end")
            await asyncio.sleep(cursor.pause_s(attempt))


class ChatStream(_StreamPosition):
    """The synchronous twin of AsyncChatStream (`for event in stream`)."""

    def __init__(self, http: httpx.Client, cursor: _Cursor, max_resumes: int) -> None:
        self._http = http
        self._cursor = cursor
        self._max_resumes = max_resumes
        self._events = self._run()

    def __iter__(self) -> Iterator[Event]:
        return self._events

    def __next__(self) -> Event:
        return next(self._events)

    def resume(self) -> ChatStream:
        if self._cursor.stream_id is None:
            raise ServerError("STREAM_NOT_FOUND", "nothing to resume: the stream never started")
        self._events = self._run()
        return self

    def cancel(self) -> bool:
        if self._cursor.stream_id is None:
            return False
        response = self._http.post(f"/api/streams/{self._cursor.stream_id}/cancel")
        _check(response)
        return bool(response.json().get("cancelled"))

    def close(self) -> None:
        self._events.close()

    def final(self) -> ChatResult:
        return _collect(list(self))

    def _connect(self) -> AbstractContextManager[EventSource]:
        method, path, kwargs = self._cursor.request()
        return connect_sse(self._http, method, path, **kwargs)

    def _run(self) -> Generator[Event, None, None]:
        cursor = self._cursor
        attempt = 0
        while not cursor.finished:
            try:
                with self._connect() as source:
                    if source.response.status_code >= 400:
                        source.response.read()
                        _check(source.response)
                    for sse in source.iter_sse():
                        event = cursor.see(sse)
                        if event is not None:
                            attempt = 0
                            yield event
                        if cursor.finished:
                            return
            except _NETWORK_ERRORS:
                if cursor.stream_id is None or attempt >= self._max_resumes:
                    raise
            if cursor.stream_id is None:
                raise _lost(cursor)
            attempt += 1
            if attempt > self._max_resumes:
                raise ServerError("INTERNAL_ERROR", "the stream keeps closing before its end")
            time.sleep(cursor.pause_s(attempt))


def _check(response: httpx.Response) -> None:
    if response.status_code >= 400:
        raise TokenRelayAPIError.from_response(response)


def _headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def _json(response: httpx.Response) -> dict[str, Any]:
    _check(response)
    result: dict[str, Any] = response.json()
    return result


def _resume_cursor(stream_id: str, last_event_id: str | None) -> _Cursor:
    cursor = _Cursor(CHAT_PATH, None)
    cursor.stream_id = stream_id
    cursor.last_event_id = last_event_id
    return cursor


# -- clients ----------------------------------------------------------------------------------


class AsyncClient:
    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        api_key: str | None = None,
        timeout: float = 300.0,
        max_resumes: int = 5,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self._http = http_client or httpx.AsyncClient(
            base_url=base_url, headers=_headers(api_key), timeout=httpx.Timeout(timeout, connect=10)
        )
        self._max_resumes = max_resumes

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    def stream(self, path: str, body: dict[str, Any]) -> AsyncChatStream:
        """POST `body` to any native streaming endpoint, e.g. `/api/plans/generate/stream`."""
        return AsyncChatStream(self._http, _Cursor(path, body), self._max_resumes)

    def stream_chat(
        self,
        message: str,
        *,
        session_id: str | None = None,
        options: dict[str, Any] | None = None,
    ) -> AsyncChatStream:
        """The typed events of one answer, resuming after dropped connections."""
        return self.stream(CHAT_PATH, _chat_body(message, session_id, options))

    def resume(self, stream_id: str, last_event_id: str | None = None) -> AsyncChatStream:
        """Read a stream from after `last_event_id` (from its start when None), then follow it."""
        return AsyncChatStream(
            self._http, _resume_cursor(stream_id, last_event_id), self._max_resumes
        )

    async def chat(
        self,
        message: str,
        *,
        session_id: str | None = None,
        options: dict[str, Any] | None = None,
    ) -> ChatResult:
        """The whole answer; raises a TokenRelayAPIError when the stream ends in an error."""
        return await self.stream_chat(message, session_id=session_id, options=options).final()

    def stream_regenerate(
        self, session_id: str, *, options: dict[str, Any] | None = None
    ) -> AsyncChatStream:
        """A new answer to the session's last message, streamed; the earlier answer stays
        readable as a version (`session(session_id)`)."""
        return self.stream(_regenerate_path(session_id), _options_body(options))

    async def regenerate(
        self, session_id: str, *, options: dict[str, Any] | None = None
    ) -> ChatResult:
        """The whole new answer to the session's last message (see `stream_regenerate`)."""
        return await self.stream_regenerate(session_id, options=options).final()

    def stream_edit(
        self,
        session_id: str,
        message_id: str,
        message: str,
        *,
        options: dict[str, Any] | None = None,
    ) -> AsyncChatStream:
        """Say user message `message_id` again as `message` and stream the answer; the
        messages from the old one on stay readable as a superseded branch."""
        body = _options_body(options, message=message)
        return self.stream(_edit_path(session_id, message_id), body)

    async def edit(
        self,
        session_id: str,
        message_id: str,
        message: str,
        *,
        options: dict[str, Any] | None = None,
    ) -> ChatResult:
        """The whole answer to the edited message (see `stream_edit`)."""
        return await self.stream_edit(session_id, message_id, message, options=options).final()

    async def cancel(self, stream_id: str) -> bool:
        return bool(_json(await self._http.post(f"/api/streams/{stream_id}/cancel"))["cancelled"])

    async def sessions(self, *, limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
        params = {"limit": limit, "offset": offset}
        found: list[dict[str, Any]] = _json(await self._http.get("/api/sessions", params=params))[
            "sessions"
        ]
        return found

    async def session(self, session_id: str) -> dict[str, Any]:
        return _json(await self._http.get(f"/api/sessions/{session_id}"))

    async def delete_session(self, session_id: str) -> None:
        _check(await self._http.delete(f"/api/sessions/{session_id}"))


class Client:
    """The synchronous twin of AsyncClient."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        api_key: str | None = None,
        timeout: float = 300.0,
        max_resumes: int = 5,
        http_client: httpx.Client | None = None,
    ) -> None:
        self._http = http_client or httpx.Client(
            base_url=base_url, headers=_headers(api_key), timeout=httpx.Timeout(timeout, connect=10)
        )
        self._max_resumes = max_resumes

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def stream(self, path: str, body: dict[str, Any]) -> ChatStream:
        return ChatStream(self._http, _Cursor(path, body), self._max_resumes)

    def stream_chat(
        self,
        message: str,
        *,
        session_id: str | None = None,
        options: dict[str, Any] | None = None,
    ) -> ChatStream:
        return self.stream(CHAT_PATH, _chat_body(message, session_id, options))

    def resume(self, stream_id: str, last_event_id: str | None = None) -> ChatStream:
        return ChatStream(self._http, _resume_cursor(stream_id, last_event_id), self._max_resumes)

    def chat(
        self,
        message: str,
        *,
        session_id: str | None = None,
        options: dict[str, Any] | None = None,
    ) -> ChatResult:
        return self.stream_chat(message, session_id=session_id, options=options).final()

    def stream_regenerate(
        self, session_id: str, *, options: dict[str, Any] | None = None
    ) -> ChatStream:
        return self.stream(_regenerate_path(session_id), _options_body(options))

    def regenerate(self, session_id: str, *, options: dict[str, Any] | None = None) -> ChatResult:
        return self.stream_regenerate(session_id, options=options).final()

    def stream_edit(
        self,
        session_id: str,
        message_id: str,
        message: str,
        *,
        options: dict[str, Any] | None = None,
    ) -> ChatStream:
        body = _options_body(options, message=message)
        return self.stream(_edit_path(session_id, message_id), body)

    def edit(
        self,
        session_id: str,
        message_id: str,
        message: str,
        *,
        options: dict[str, Any] | None = None,
    ) -> ChatResult:
        return self.stream_edit(session_id, message_id, message, options=options).final()

    def cancel(self, stream_id: str) -> bool:
        return bool(_json(self._http.post(f"/api/streams/{stream_id}/cancel"))["cancelled"])

    def sessions(self, *, limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
        params = {"limit": limit, "offset": offset}
        found: list[dict[str, Any]] = _json(self._http.get("/api/sessions", params=params))[
            "sessions"
        ]
        return found

    def session(self, session_id: str) -> dict[str, Any]:
        return _json(self._http.get(f"/api/sessions/{session_id}"))

    def delete_session(self, session_id: str) -> None:
        _check(self._http.delete(f"/api/sessions/{session_id}"))
