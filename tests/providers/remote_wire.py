"""Test helpers for the remote adapters: raw HTTP transcripts, a MockTransport client that
replays them into the real SDK client, and a tiny real HTTP server on 127.0.0.1.

A transcript file (`transcripts/<provider>/<name>.http`) is a raw HTTP response: the status
line, headers, a blank line, then the body byte for byte in the provider's wire format.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import httpx2

TRANSCRIPTS = Path(__file__).parent / "transcripts"
_EVENT_END = re.compile(rb"\r\n\r\n|\n\n|\r\r")


@dataclass(frozen=True)
class Transcript:
    status: int
    reason: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def events(self) -> list[bytes]:
        """The body cut after each blank line, so a stream arrives one SSE event at a time."""
        pieces: list[bytes] = []
        start = 0
        for match in _EVENT_END.finditer(self.body):
            pieces.append(self.body[start : match.end()])
            start = match.end()
        if start < len(self.body):
            pieces.append(self.body[start:])
        return pieces

    def with_headers(self, **headers: str) -> Transcript:
        names = {k.replace("_", "-").lower() for k in headers}
        kept = tuple((k, v) for k, v in self.headers if k.lower() not in names)
        extra = tuple((k.replace("_", "-"), v) for k, v in headers.items())
        return replace(self, headers=kept + extra)


def load(provider: str, name: str) -> Transcript:
    raw = (TRANSCRIPTS / provider / f"{name}.http").read_bytes()
    head, _, body = raw.partition(b"\n\n")
    status_line, *header_lines = head.decode().splitlines()
    _, status, reason = status_line.split(" ", 2)
    headers = tuple(
        (k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in header_lines)
    )
    return Transcript(status=int(status), reason=reason, headers=headers, body=body)


@dataclass
class Recorded:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class Replayer:
    """Serves transcripts in order (the last one repeats) and records each request."""

    transcripts: Sequence[Transcript]
    requests: list[Recorded] = field(default_factory=list)

    def next(self, recorded: Recorded) -> Transcript:
        self.requests.append(recorded)
        return self.transcripts[min(len(self.requests), len(self.transcripts)) - 1]


async def _chunks(events: list[bytes]) -> AsyncIterator[bytes]:
    for event in events:
        yield event


def mock_client(*transcripts: Transcript) -> tuple[httpx.AsyncClient, Replayer]:
    """An `httpx.AsyncClient` whose MockTransport replays the transcripts (openai, google-genai)."""
    replayer = Replayer(transcripts)

    def handler(request: httpx.Request) -> httpx.Response:
        t = replayer.next(_record(request))
        return httpx.Response(t.status, headers=list(t.headers), content=_chunks(t.events()))

    return httpx.AsyncClient(transport=httpx.MockTransport(handler)), replayer


def mock_client2(*transcripts: Transcript) -> tuple[httpx2.AsyncClient, Replayer]:
    """The same over `httpx2`, which the anthropic SDK requires (it refuses httpx objects)."""
    replayer = Replayer(transcripts)

    def handler(request: httpx2.Request) -> httpx2.Response:
        t = replayer.next(_record(request))
        return httpx2.Response(t.status, headers=list(t.headers), content=_chunks(t.events()))

    return httpx2.AsyncClient(transport=httpx2.MockTransport(handler)), replayer


def _record(request: httpx.Request | httpx2.Request) -> Recorded:
    return Recorded(
        method=request.method,
        path=request.url.path,
        query=bytes(request.url.query).decode("ascii"),
        headers={k.lower(): v for k, v in request.headers.items()},
        body=request.content,
    )


# -- a real HTTP/1.1 server on 127.0.0.1 --------------------------------------------------------


@dataclass
class Reply:
    transcript: Transcript
    hold_after: int | None = None  # send this many events, then keep the response open


Responder = Callable[[Recorded], Reply]


class WireServer:
    """A tiny HTTP/1.1 server (asyncio streams, chunked responses) that speaks whatever the
    responder returns and records requests and the moment each connection was closed."""

    def __init__(self, responder: Responder) -> None:
        self._responder = responder
        self._server: asyncio.Server | None = None
        self.requests: list[Recorded] = []
        self.held = asyncio.Event()  # a held response has sent its events
        self.closed_while_held = asyncio.Event()  # the client closed a held connection
        self.url = ""

    async def __aenter__(self) -> WireServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), timeout=5)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                recorded = await _read_request(reader)
                if recorded is None:
                    return
                self.requests.append(recorded)
                reply = self._responder(recorded)
                if not await self._send(reply, reader, writer):
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _send(
        self, reply: Reply, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        t = reply.transcript
        skip = {"content-length", "transfer-encoding", "connection"}
        lines = [f"HTTP/1.1 {t.status} {t.reason}"]
        lines += [f"{k}: {v}" for k, v in t.headers if k.lower() not in skip]
        lines += ["transfer-encoding: chunked", "", ""]
        writer.write("\r\n".join(lines).encode())
        events = t.events()
        if reply.hold_after is not None:
            events = events[: reply.hold_after]
        for event in events:
            writer.write(b"%x\r\n%s\r\n" % (len(event), event))
            await writer.drain()
        if reply.hold_after is not None:
            self.held.set()
            # the body never ends: wait for the client to close the connection
            while await reader.read(1024):
                pass
            self.closed_while_held.set()
            return False
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True


async def _read_request(reader: asyncio.StreamReader) -> Recorded | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    request_line, *header_lines = head.decode("latin-1").split("\r\n")
    method, target, _ = request_line.split(" ", 2)
    headers = {}
    for line in header_lines:
        if line:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    path, _, query = target.partition("?")
    return Recorded(method=method, path=path, query=query, headers=headers, body=body)
