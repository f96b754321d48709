"""The Python client against a real server: typed events, resume, typed errors, sessions."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tokenrelay.client import (
    AsyncClient,
    Client,
    InvalidRequestError,
    NotFoundError,
    ProviderAPIError,
    StreamCancelledError,
    TokenRelayAPIError,
)
from tokenrelay.events import DoneEvent, MetadataEvent, TokenEvent, parse_event_id

SLOW = {"scripted": {"reply": "one two three four five six", "delay_ms": 30}}


class _CutStream(httpx.AsyncByteStream):
    """A response body that fails like a dropped connection after `frames` SSE frames."""

    def __init__(self, inner: httpx.AsyncByteStream, frames: int) -> None:
        self._inner = inner
        self._frames = frames

    async def __aiter__(self) -> AsyncIterator[bytes]:
        seen, buffer = 0, b""
        async for chunk in self._inner:
            buffer += chunk
            while b"\n\n" in buffer:
                frame, buffer = buffer.split(b"\n\n", 1)
                yield frame + b"\n\n"
                if not frame.startswith(b":"):
                    seen += 1
                if seen >= self._frames:
                    raise httpx.ReadError("connection dropped (test)")

    async def aclose(self) -> None:
        await self._inner.aclose()


class CuttingTransport(httpx.AsyncBaseTransport):
    """The real transport; the first `cuts` streaming responses are cut after `frames` frames."""

    def __init__(self, frames: int, cuts: int = 1) -> None:
        self._real = httpx.AsyncHTTPTransport()
        self._frames = frames
        self._cuts = cuts
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        response = await self._real.handle_async_request(request)
        streaming = response.headers.get("content-type", "").startswith("text/event-stream")
        if not streaming or self._cuts <= 0:
            return response
        self._cuts -= 1
        assert isinstance(response.stream, httpx.AsyncByteStream)
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=_CutStream(response.stream, self._frames),
            request=request,
        )

    async def aclose(self) -> None:
        await self._real.aclose()


def cutting_client(url: str, transport: CuttingTransport, **kwargs: Any) -> AsyncClient:
    return AsyncClient(http_client=httpx.AsyncClient(base_url=url, transport=transport), **kwargs)


def assert_whole(events: list[Any]) -> None:
    """Ids 1..n with no gap or repeat, one terminal event at the end."""
    stream_id = events[0].stream_id
    assert isinstance(events[0], MetadataEvent)
    assert isinstance(events[-1], DoneEvent)
    tokens = [e for e in events if isinstance(e, TokenEvent)]
    assert [t.index for t in tokens] == list(range(len(tokens)))
    assert stream_id


async def test_stream_chat_yields_typed_events(live_server) -> None:
    async with live_server() as srv, AsyncClient(srv.url) as client:
        stream = client.stream_chat(
            "안녕하세요", options={"scripted": {"reply": "반갑습니다 여러분"}}
        )
        events = [e async for e in stream]
    assert_whole(events)
    assert "".join(e.content for e in events if isinstance(e, TokenEvent)) == "반갑습니다 여러분"
    assert stream.finished and stream.stream_id == events[0].stream_id
    assert stream.last_event_id == f"{stream.stream_id}:{len(events)}"


async def test_chat_returns_the_final_answer_and_continues_a_session(live_server) -> None:
    async with live_server() as srv, AsyncClient(srv.url) as client:
        first = await client.chat("first question")
        second = await client.chat("second question", session_id=first.session_id)
        history = await client.session(first.session_id)
    assert first.content == "This is tokenrelay's scripted answer to: first question"
    assert first.finish_reason == "stop" and first.tool_calls == [] and first.sources == []
    assert second.session_id == first.session_id
    assert [m["role"] for m in history["messages"]] == ["user", "assistant"] * 2


async def test_dropped_connection_resumes_without_loss_or_repeat(live_server) -> None:
    transport = CuttingTransport(frames=3)
    async with (
        live_server(disconnect_grace_s=10) as srv,
        cutting_client(srv.url, transport) as client,
    ):
        events = [e async for e in client.stream_chat("hi", options=SLOW)]
    assert_whole(events)
    assert (
        "".join(e.content for e in events if isinstance(e, TokenEvent)) == SLOW["scripted"]["reply"]
    )
    resumed = transport.requests[1]
    stream_id = events[0].stream_id
    assert (resumed.method, resumed.url.path) == ("GET", f"/api/streams/{stream_id}")
    assert resumed.headers["last-event-id"] == f"{stream_id}:3"


async def test_resume_by_hand_after_the_retries_are_used_up(live_server) -> None:
    transport = CuttingTransport(frames=2)
    async with (
        live_server(disconnect_grace_s=10) as srv,
        cutting_client(srv.url, transport, max_resumes=0) as client,
    ):
        stream = client.stream_chat("hi", options=SLOW)
        seen = []
        with pytest.raises(httpx.ReadError):
            async for event in stream:
                seen.append(event)
        assert stream.last_event_id is not None
        assert parse_event_id(stream.last_event_id)[1] == 2
        seen += [event async for event in stream.resume()]
    assert_whole(seen)


async def test_client_resume_reads_from_an_event_id(live_server) -> None:
    async with live_server() as srv, AsyncClient(srv.url) as client:
        result = await client.chat("hi")
        later = [e async for e in client.resume(result.stream_id, f"{result.stream_id}:2")]
        everything = [e async for e in client.resume(result.stream_id)]
    assert later == result.events[2:]
    assert everything == result.events


async def test_errors_are_typed_and_carry_our_codes(live_server) -> None:
    async with live_server() as srv, AsyncClient(srv.url) as client:
        with pytest.raises(InvalidRequestError) as empty:
            await client.chat("   ")
        chosen = await client.chat("hi", session_id="nope")  # a client-chosen id: made
        with pytest.raises(ProviderAPIError) as failed:
            await client.chat("hi", options={"scripted": {"error_after": 1}})
        with pytest.raises(NotFoundError) as gone:
            await client.session("never-made")
    assert (empty.value.code, empty.value.status) == ("VALIDATION_ERROR", 422)
    assert empty.value.suggestion
    assert chosen.session_id == "nope"
    assert failed.value.code == "PROVIDER_ERROR" and failed.value.stream_id
    assert failed.value.status is None  # reported as the stream's error event
    assert gone.value.code == "SESSION_NOT_FOUND"
    assert isinstance(failed.value, TokenRelayAPIError)


async def test_cancel_ends_the_stream_with_cancelled(live_server) -> None:
    async with live_server() as srv, AsyncClient(srv.url) as client:
        stream = client.stream_chat("hi", options={"scripted": {"stall_after": 1}})
        events = []
        async for event in stream:
            events.append(event)
            if isinstance(event, TokenEvent):
                assert await stream.cancel()
        with pytest.raises(StreamCancelledError):
            await client.resume(stream.stream_id or "").final()
    assert events[-1].type == "error" and events[-1].code == "CANCELLED"


async def test_heartbeat_after_an_event_is_not_an_event(live_server) -> None:
    # regression: httpx-sse reports a `: ping` frame that follows an event with an id as an
    # empty event carrying that id; it must be skipped, not parsed
    async with live_server(heartbeat_s=0.02) as srv, AsyncClient(srv.url) as client:
        result = await client.chat("hi", options={"scripted": {"reply": "a b c", "delay_ms": 120}})
    assert result.content == "a b c"


async def test_sessions_list_and_delete(live_server) -> None:
    async with live_server() as srv, AsyncClient(srv.url) as client:
        result = await client.chat("remember me")
        listed = await client.sessions()
        await client.delete_session(result.session_id)
        with pytest.raises(NotFoundError):
            await client.delete_session(result.session_id)
        after = await client.sessions()
    assert [s["id"] for s in listed] == [result.session_id]
    assert after == []


async def test_sync_client(live_server) -> None:
    def use(url: str) -> tuple[str, list[str], list[dict[str, Any]]]:
        with Client(url) as client:
            answer = client.chat(
                "동기 클라이언트", options={"scripted": {"reply": "네 알겠습니다"}}
            )
            types = [e.type for e in client.stream_chat("again", session_id=answer.session_id)]
            with pytest.raises(InvalidRequestError):
                client.chat("")
            stream = client.resume(answer.stream_id, f"{answer.stream_id}:1")
            replayed = [e.type for e in stream]
            assert replayed[0] == "token" and replayed[-1] == "done"
            return answer.content, types, client.sessions()

    async with live_server() as srv:
        content, types, sessions = await asyncio.to_thread(use, srv.url)
    assert content == "네 알겠습니다"
    assert types[0] == "metadata" and types[-1] == "done"
    assert len(sessions) == 1 and sessions[0]["message_count"] == 4
