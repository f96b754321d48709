"""A cheap SSE load generator on raw asyncio sockets.

Each stream is one ``asyncio.Protocol`` on its own TCP connection: it sends one HTTP/1.1 POST,
then parses the response head, chunked transfer encoding and SSE frames with a few bytes
operations per read. It counts ``data:`` events, reads each event's ``"type"`` with one regex
search, and records per stream the time to the first event and the first token, every gap
between two token events, the duration up to the terminal event (``done`` or ``error``) and any
error. Events that arrive in the same read share that read's timestamp: that is when the
client could have shown them.

Three shapes of load:

- ``run_fixed``: N streams whose starts are spread evenly over a ramp; waits for all of them.
- ``run_closed``: C lanes that each open a new stream as soon as the previous one ends, for a
  time or a number of requests (throughput, and time to first token at concurrency 1).
- ``hold_open``: N streams kept open without reading to the end (memory per idle stream).

``run_fixed`` can split its streams over several processes and merge the results.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import resource
import time
from array import array
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from typing import Any

_TYPE_RE = re.compile(rb'"type":\s*"([a-z_]+)"')
_TOKEN = b"token"
_TERMINAL = (b"done", b"error")


_FRAMES = {
    "native": (_TYPE_RE, _TOKEN, _TERMINAL),
    # the AI SDK's UI message stream (`/api/ui/chat`): a `text-delta` chunk is a token,
    # `data: [DONE]` the end
    "ui": (re.compile(rb'("text-delta"|\[DONE\])'), b'"text-delta"', (b"[DONE]",)),
    # the OpenAI Responses API's events: a text delta is a token; the stream ends with
    # `response.completed`, `.incomplete` or `.failed`
    "responses": (
        re.compile(rb'"type":"response\.(output_text\.delta|completed|incomplete|failed)"'),
        b"output_text.delta",
        (b"completed", b"incomplete", b"failed"),
    ),
    # OpenAI `chat.completion.chunk` frames: one with a "content" key is a token (the role
    # chunk, whose content is empty, counts as one), `data: [DONE]` is the end
    "openai": (re.compile(rb'("content"|\[DONE\])'), b'"content"', (b"[DONE]",)),
}


def use_frames(wire: str) -> None:
    """Which frames this process's streams read: tokenrelay's own ("native") or OpenAI's
    chunks ("openai", for `/v1/chat/completions`: bench/relay/v1.py). Not carried into the
    worker processes of `run_fixed(procs=...)`."""
    global _TYPE_RE, _TOKEN, _TERMINAL
    _TYPE_RE, _TOKEN, _TERMINAL = _FRAMES[wire]


def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


# a body holding this (a chat id, say) gets a unique value of the same length per stream
UNIQUE = "@UNIQUE@@@@@"
_unique = [0]


def unique_request(request: bytes) -> bytes:
    """`request` with `UNIQUE` replaced by a value no other stream of this run has."""
    if UNIQUE.encode() not in request:
        return request
    _unique[0] += 1
    value = b"%03d%09d" % (os.getpid() % 1000, _unique[0])
    return request.replace(UNIQUE.encode(), value)


def request_bytes(host: str, port: int, path: str, body: dict[str, Any]) -> bytes:
    payload = json.dumps(body, separators=(",", ":")).encode()
    head = (
        f"POST {path} HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        "Accept: text/event-stream\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    )
    return head.encode() + payload


@dataclass(slots=True)
class StreamRecord:
    start: float  # request written (perf_counter)
    first_event: float | None = None
    first_token: float | None = None
    last_token: float = 0.0  # (perf_counter) 0.0 until the first token
    end: float | None = None  # terminal event seen
    tokens: int = 0
    events: int = 0
    error: str | None = None
    aborted: bool = False  # closed by us on purpose (disconnect scenario)
    status: int = 0


@dataclass
class LoadResult:
    records: list[StreamRecord] = field(default_factory=list)
    gaps: array = field(default_factory=lambda: array("d"))  # type: ignore[type-arg]
    window_tokens: int = 0  # token events inside the counting window (closed loop)
    cpu_s: float = 0.0  # this load generator's own CPU time
    wall_s: float = 0.0

    def merge(self, other: LoadResult) -> None:
        self.records.extend(other.records)
        self.gaps.extend(other.gaps)
        self.window_tokens += other.window_tokens
        self.cpu_s += other.cpu_s
        self.wall_s = max(self.wall_s, other.wall_s)


class _Shared:
    """State shared by the streams of one load run (one process)."""

    __slots__ = ("gaps", "window", "window_tokens")

    def __init__(self, window: tuple[float, float] | None) -> None:
        self.gaps: array = array("d")  # type: ignore[type-arg]
        self.window = window
        self.window_tokens = 0


class _Stream(asyncio.Protocol):
    __slots__ = (
        "_chunked",
        "_close_after",
        "_done",
        "_head",
        "_raw",
        "_request",
        "_shared",
        "_sse",
        "rec",
        "transport",
    )

    def __init__(
        self,
        request: bytes,
        shared: _Shared,
        done: asyncio.Future[StreamRecord],
        close_after_tokens: int | None,
    ) -> None:
        self._request = request
        self._shared = shared
        self._done = done
        self._close_after = close_after_tokens
        self._head: bytearray | None = bytearray()
        self._chunked = False
        self._raw = bytearray()
        self._sse = b""
        self.rec = StreamRecord(start=0.0)
        self.transport: asyncio.Transport | None = None

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.rec.start = time.perf_counter()
        transport.write(self._request)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.rec.end is None and not self.rec.aborted and self.rec.error is None:
            self.rec.error = f"closed before terminal event ({exc or 'eof'})"
        self._finish()

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        head = self._head
        if head is not None:
            head += data
            i = head.find(b"\r\n\r\n")
            if i < 0:
                return
            self._head = None
            text = bytes(head[:i]).lower()
            data = bytes(head[i + 4 :])
            try:
                self.rec.status = int(text[9:12])
            except ValueError:
                self.rec.status = -1
            if self.rec.status != 200:
                self._fail(f"http {self.rec.status}")
                return
            self._chunked = b"transfer-encoding: chunked" in text
            if not data:
                return
        if self._chunked:
            raw = self._raw
            raw += data
            pos = 0
            parts = []
            while True:
                j = raw.find(b"\r\n", pos)
                if j < 0:
                    break
                size = int(raw[pos:j].split(b";", 1)[0], 16)
                end = j + 2 + size
                if len(raw) < end + 2:
                    break
                if size == 0:
                    pos = end + 2
                    break
                parts.append(raw[j + 2 : end])
                pos = end + 2
            if pos:
                del raw[:pos]
            if not parts:
                return
            data = b"".join(parts)
        self._events(data, now)

    # -- parsing

    def _events(self, data: bytes, now: float) -> None:
        buf = self._sse + data if self._sse else data
        if b"\r" in buf:
            buf = buf.replace(b"\r\n", b"\n")
        if b"\n\n" not in buf:
            self._sse = buf
            return
        frames = buf.split(b"\n\n")
        self._sse = frames.pop()
        rec = self.rec
        for frame in frames:
            if b"data:" not in frame:
                continue  # a comment such as ": ping"
            rec.events += 1
            if rec.first_event is None:
                rec.first_event = now
            m = _TYPE_RE.search(frame)
            kind = m.group(1) if m else b""
            if kind == _TOKEN:
                if rec.tokens:
                    self._shared.gaps.append(now - rec.last_token)
                else:
                    rec.first_token = now
                rec.last_token = now
                rec.tokens += 1
                window = self._shared.window
                if window is not None and window[0] <= now < window[1]:
                    self._shared.window_tokens += 1
                if self._close_after is not None and rec.tokens >= self._close_after:
                    rec.aborted = True
                    self._close(abort=True)
                    return
            elif kind in _TERMINAL:
                rec.end = now
                if kind == b"error":
                    err = re.search(rb'"code":\s*"([A-Z_]+)"', frame)
                    rec.error = "error event " + (err.group(1).decode() if err else "?")
                self._close(abort=False)
                return

    # -- ending

    def _fail(self, reason: str) -> None:
        if self.rec.error is None:
            self.rec.error = reason
        self._close(abort=True)

    def _close(self, *, abort: bool) -> None:
        if self.transport is not None and not self.transport.is_closing():
            if abort:
                self.transport.abort()
            else:
                self.transport.close()
        self._finish()

    def _finish(self) -> None:
        if not self._done.done():
            self._done.set_result(self.rec)

    def timeout(self) -> None:
        self._fail("timeout")


async def _one_stream(
    host: str,
    port: int,
    request: bytes,
    shared: _Shared,
    *,
    timeout_s: float,
    close_after_tokens: int | None = None,
    on_open: Callable[[_Stream], None] | None = None,
) -> StreamRecord:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[StreamRecord] = loop.create_future()
    proto = _Stream(unique_request(request), shared, done, close_after_tokens)
    try:
        await asyncio.wait_for(loop.create_connection(lambda: proto, host, port), timeout_s)
    except (OSError, TimeoutError) as e:
        return StreamRecord(start=time.perf_counter(), error=f"connect: {type(e).__name__} {e}")
    if on_open is not None:
        on_open(proto)
    handle = loop.call_later(timeout_s, proto.timeout)
    try:
        return await done
    finally:
        handle.cancel()


# -- fixed: N streams with a ramp


@dataclass(frozen=True)
class FixedSpec:
    host: str
    port: int
    path: str
    body: dict[str, Any]
    streams: int
    ramp_s: float = 1.0
    timeout_s: float = 60.0
    close_after_tokens: int | None = None


async def _fixed(spec: FixedSpec, indices: range, t0: float) -> LoadResult:
    _raise_nofile()
    shared = _Shared(None)
    request = request_bytes(spec.host, spec.port, spec.path, spec.body)
    cpu0 = time.process_time()
    step = spec.ramp_s / spec.streams if spec.streams else 0.0

    async def start(i: int) -> StreamRecord:
        delay = t0 + i * step - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        return await _one_stream(
            spec.host,
            spec.port,
            request,
            shared,
            timeout_s=spec.timeout_s,
            close_after_tokens=spec.close_after_tokens,
        )

    records = await asyncio.gather(*(start(i) for i in indices))
    return LoadResult(
        records=list(records),
        gaps=shared.gaps,
        cpu_s=time.process_time() - cpu0,
        wall_s=time.perf_counter() - t0,
    )


def _fixed_worker(spec: FixedSpec, indices: range, t0: float) -> LoadResult:
    return asyncio.run(_fixed(spec, indices, t0))


def run_fixed(spec: FixedSpec, procs: int = 1) -> LoadResult:
    """Open ``spec.streams`` streams, starts spread over ``spec.ramp_s``; wait for all."""
    t0 = time.perf_counter() + (0.3 if procs > 1 else 0.01)
    if procs <= 1:
        return asyncio.run(_fixed(spec, range(spec.streams), t0))
    merged = LoadResult()
    ctx = get_context("fork")
    with ProcessPoolExecutor(max_workers=procs, mp_context=ctx) as pool:
        futures = [
            pool.submit(_fixed_worker, spec, range(k, spec.streams, procs), t0)
            for k in range(procs)
        ]
        for f in futures:
            merged.merge(f.result())
    return merged


# -- closed loop: C lanes, each one stream after another


@dataclass(frozen=True)
class ClosedSpec:
    host: str
    port: int
    path: str
    body: dict[str, Any]
    concurrency: int
    duration_s: float | None = None  # stop starting streams after this
    requests: int | None = None  # or after this many streams in all
    warmup_s: float = 0.0  # token events before this are not counted in window_tokens
    timeout_s: float = 30.0


async def _closed(spec: ClosedSpec) -> LoadResult:
    _raise_nofile()
    request = request_bytes(spec.host, spec.port, spec.path, spec.body)
    t0 = time.perf_counter()
    stop = t0 + spec.duration_s if spec.duration_s is not None else float("inf")
    shared = _Shared((t0 + spec.warmup_s, stop))
    cpu0 = time.process_time()
    records: list[StreamRecord] = []
    budget = [spec.requests if spec.requests is not None else 1 << 62]

    async def lane() -> None:
        while time.perf_counter() < stop and budget[0] > 0:
            budget[0] -= 1
            records.append(
                await _one_stream(spec.host, spec.port, request, shared, timeout_s=spec.timeout_s)
            )

    await asyncio.gather(*(lane() for _ in range(spec.concurrency)))
    end = time.perf_counter()
    return LoadResult(
        records=records,
        gaps=shared.gaps,
        window_tokens=shared.window_tokens,
        cpu_s=time.process_time() - cpu0,
        wall_s=min(end, stop) - t0 - spec.warmup_s,
    )


def run_closed(spec: ClosedSpec) -> LoadResult:
    return asyncio.run(_closed(spec))


# -- held open: N streams that receive nothing after the start


async def _hold(
    spec: FixedSpec, settle_s: float, measure: Callable[[], Awaitable[None] | None]
) -> LoadResult:
    _raise_nofile()
    shared = _Shared(None)
    request = request_bytes(spec.host, spec.port, spec.path, spec.body)
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    opened: list[_Stream] = []
    step = spec.ramp_s / spec.streams if spec.streams else 0.0

    async def start(i: int) -> StreamRecord:
        delay = t0 + i * step - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        return await _one_stream(
            spec.host, spec.port, request, shared, timeout_s=spec.timeout_s, on_open=opened.append
        )

    tasks = [asyncio.ensure_future(start(i)) for i in range(spec.streams)]
    # wait until every stream has its response head (or has ended), then let the server settle
    deadline = time.perf_counter() + spec.ramp_s + spec.timeout_s
    while time.perf_counter() < deadline:
        ended = sum(1 for t in tasks if t.done())
        waiting = sum(1 for p in opened if p.rec.status and not p._done.done())
        if ended + waiting >= spec.streams:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(settle_s)
    result = measure()
    if result is not None:
        await result
    for p in opened:
        p.rec.aborted = True
        p._close(abort=False)
    records = await asyncio.gather(*tasks)
    return LoadResult(
        records=list(records),
        gaps=shared.gaps,
        cpu_s=time.process_time() - cpu0,
        wall_s=time.perf_counter() - t0,
    )


def hold_open(
    spec: FixedSpec, settle_s: float, measure: Callable[[], Awaitable[None] | None]
) -> LoadResult:
    """Open ``spec.streams`` streams, call ``measure()`` while all are open, then close them."""
    return asyncio.run(_hold(spec, settle_s, measure))


def cpu_count() -> int:
    return os.cpu_count() or 1
