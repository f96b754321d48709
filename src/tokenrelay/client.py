"""Python client for tokenrelay's native API, over httpx + httpx-sse.

    async with AsyncClient("http://127.0.0.1:8000") as client:
        async for event in client.stream_chat("안녕하세요"):
            if event.type == "token":
                print(event.content, end="")

A stream that loses its connection resumes from the last event id it saw (on any replica
that reads the shared log), so no event is lost or repeated.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from httpx_sse import ServerSentEvent, aconnect_sse, connect_sse

from tokenrelay.events import DoneEvent, ErrorEvent, Event, MetadataEvent, parse_event

DEFAULT_URL = "http://127.0.0.1:8000"
_NETWORK_ERRORS = (httpx.TransportError, httpx.RemoteProtocolError)


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
    ) -> None:
        super().__init__(f"{code}: {message}" + (f" ({suggestion})" if suggestion else ""))
        self.code = code
        self.message = message
        self.suggestion = suggestion
        self.retryable = retryable
        self.status = status

    @classmethod
    def from_event(cls, event: ErrorEvent) -> TokenRelayAPIError:
        return cls(
            event.code, event.message, suggestion=event.suggestion, retryable=event.retryable
        )

    @classmethod
    def from_response(cls, response: httpx.Response) -> TokenRelayAPIError:
        try:
            body = response.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        return cls(
            str(body.get("code", f"HTTP_{response.status_code}")),
            str(body.get("message", response.reason_phrase)),
            suggestion=str(body.get("suggestion", "")),
            retryable=bool(body.get("retryable", False)),
            status=response.status_code,
        )


@dataclass
class ChatResult:
    content: str
    session_id: str
    message_id: str
    stream_id: str
    done: DoneEvent
    events: list[Event] = field(default_factory=list)


def _chat_body(
    message: str, session_id: str | None, options: dict[str, Any] | None
) -> dict[str, Any]:
    body: dict[str, Any] = {"message": message}
    if session_id:
        body["session_id"] = session_id
    if options:
        body["options"] = options
    return body


class _Cursor:
    """Where a stream is: its id and the last event seen; decides what to request next."""

    def __init__(self) -> None:
        self.stream_id: str | None = None
        self.last_event_id: str | None = None
        self.finished = False

    def see(self, sse: ServerSentEvent) -> Event:
        if sse.id:
            self.last_event_id = sse.id
            self.stream_id = sse.id.rpartition(":")[0]
        event = parse_event(sse.data)
        if event.type in ("done", "error"):
            self.finished = True
        return event

    def resume_request(self) -> tuple[str, dict[str, str]]:
        assert self.stream_id is not None and self.last_event_id is not None
        return f"/api/streams/{self.stream_id}", {"Last-Event-ID": self.last_event_id}


def _check(response: httpx.Response) -> None:
    if response.status_code >= 400:
        raise TokenRelayAPIError.from_response(response)


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
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = http_client or httpx.AsyncClient(
            base_url=base_url, headers=headers, timeout=httpx.Timeout(timeout, connect=10.0)
        )
        self._max_resumes = max_resumes

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def stream_chat(
        self,
        message: str,
        *,
        session_id: str | None = None,
        options: dict[str, Any] | None = None,
    ) -> AsyncIterator[Event]:
        """Yield the typed events of one answer, resuming after dropped connections."""
        cursor = _Cursor()
        body = _chat_body(message, session_id, options)
        resumes = 0
        while True:
            try:
                if cursor.stream_id is None:
                    source = aconnect_sse(self._http, "POST", "/api/chat/stream", json=body)
                else:
                    path, headers = cursor.resume_request()
                    source = aconnect_sse(self._http, "GET", path, headers=headers)
                async with source as events:
                    if events.response.status_code >= 400:
                        await events.response.aread()
                        _check(events.response)
                    async for sse in events.aiter_sse():
                        yield cursor.see(sse)
                        if cursor.finished:
                            return
            except _NETWORK_ERRORS:
                if cursor.stream_id is None or resumes >= self._max_resumes:
                    raise
            if cursor.finished:
                return
            if cursor.stream_id is None:
                raise TokenRelayAPIError("INTERNAL_ERROR", "stream closed before any event")
            resumes += 1

    async def resume(
        self, stream_id: str, last_event_id: str | None = None
    ) -> AsyncIterator[Event]:
        """Read a stream from after `last_event_id` (from its start when None)."""
        headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
        async with aconnect_sse(
            self._http, "GET", f"/api/streams/{stream_id}", headers=headers
        ) as events:
            if events.response.status_code >= 400:
                await events.response.aread()
                _check(events.response)
            async for sse in events.aiter_sse():
                yield parse_event(sse.data)

    async def cancel(self, stream_id: str) -> bool:
        response = await self._http.post(f"/api/streams/{stream_id}/cancel")
        _check(response)
        return bool(response.json().get("cancelled"))

    async def chat(
        self,
        message: str,
        *,
        session_id: str | None = None,
        options: dict[str, Any] | None = None,
    ) -> ChatResult:
        """The whole answer; raises TokenRelayAPIError when the stream ends in an error."""
        return _collect(
            [e async for e in self.stream_chat(message, session_id=session_id, options=options)]
        )

    async def session(self, session_id: str) -> dict[str, Any]:
        response = await self._http.get(f"/api/sessions/{session_id}")
        _check(response)
        result: dict[str, Any] = response.json()
        return result


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
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = http_client or httpx.Client(
            base_url=base_url, headers=headers, timeout=httpx.Timeout(timeout, connect=10.0)
        )
        self._max_resumes = max_resumes

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def stream_chat(
        self,
        message: str,
        *,
        session_id: str | None = None,
        options: dict[str, Any] | None = None,
    ) -> Iterator[Event]:
        cursor = _Cursor()
        body = _chat_body(message, session_id, options)
        resumes = 0
        while True:
            try:
                if cursor.stream_id is None:
                    source = connect_sse(self._http, "POST", "/api/chat/stream", json=body)
                else:
                    path, headers = cursor.resume_request()
                    source = connect_sse(self._http, "GET", path, headers=headers)
                with source as events:
                    if events.response.status_code >= 400:
                        events.response.read()
                        _check(events.response)
                    for sse in events.iter_sse():
                        yield cursor.see(sse)
                        if cursor.finished:
                            return
            except _NETWORK_ERRORS:
                if cursor.stream_id is None or resumes >= self._max_resumes:
                    raise
            if cursor.finished:
                return
            if cursor.stream_id is None:
                raise TokenRelayAPIError("INTERNAL_ERROR", "stream closed before any event")
            resumes += 1

    def cancel(self, stream_id: str) -> bool:
        response = self._http.post(f"/api/streams/{stream_id}/cancel")
        _check(response)
        return bool(response.json().get("cancelled"))

    def chat(
        self,
        message: str,
        *,
        session_id: str | None = None,
        options: dict[str, Any] | None = None,
    ) -> ChatResult:
        return _collect(list(self.stream_chat(message, session_id=session_id, options=options)))

    def session(self, session_id: str) -> dict[str, Any]:
        response = self._http.get(f"/api/sessions/{session_id}")
        _check(response)
        result: dict[str, Any] = response.json()
        return result


def _collect(events: list[Event]) -> ChatResult:
    """Fold a finished stream's events into its result (pure)."""
    meta = next((e for e in events if isinstance(e, MetadataEvent)), None)
    last = events[-1] if events else None
    if isinstance(last, ErrorEvent):
        raise TokenRelayAPIError.from_event(last)
    if not isinstance(last, DoneEvent) or meta is None:
        raise TokenRelayAPIError("INTERNAL_ERROR", "the stream ended without a done event")
    content = "".join(e.content for e in events if e.type == "token")
    return ChatResult(
        content=content,
        session_id=last.session_id,
        message_id=last.message_id,
        stream_id=meta.stream_id,
        done=last,
        events=events,
    )
