"""What the fault suite (test_faults.py) and the nginx test share: reading SSE over real HTTP
with a cut wherever the test wants it, resuming with `Last-Event-ID`, the one assertion that a
client saw an exact stream, two real replicas on their own Redis, a fresh PostgreSQL database.

A client's view of a stream is everything it read, over every connection, in order: the
assertion is on that concatenation (ids `<stream>:1..n` with no gap and no repeat, token
indexes 0..k-1, exactly one terminal event and it is the last), so a resume that skips or
repeats an event fails it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from tests.conftest import postgres_url, unavailable
from tests.helpers import Frame, parse_frames
from tests.processes import ServerProcess, serve
from tests.redis_server import OwnRedis
from tokenrelay.providers.scripted import default_reply, split_pieces

TERMINAL = ("done", "error")


def complete_events(raw: bytes | str) -> list[Frame]:
    """The events of every complete frame in `raw` (a frame cut in the middle is dropped, as
    an EventSource drops it)."""
    data = raw.encode() if isinstance(raw, str) else raw
    cut = data.rfind(b"\n\n")
    if cut < 0:
        return []
    return [f for f in parse_frames(data[: cut + 2].decode()) if f.data is not None]


@dataclass
class Read:
    """One response as the client saw it: its status and the events it kept."""

    status: int
    frames: list[Frame]
    headers: dict[str, str] = field(default_factory=dict)
    cut: bool = False  # the client hung up (`stop_when` / `cut_bytes`), not the server
    broken: bool = False  # the connection broke under the client before the body ended

    @property
    def terminal(self) -> Frame | None:
        return self.frames[-1] if self.frames and self.frames[-1].type in TERMINAL else None


class _Events:
    """Complete frames parsed as bytes arrive (each byte parsed once)."""

    def __init__(self) -> None:
        self.frames: list[Frame] = []
        self._tail = b""

    def feed(self, data: bytes) -> None:
        self._tail += data
        cut = self._tail.rfind(b"\n\n")
        if cut >= 0:
            done, self._tail = self._tail[: cut + 2], self._tail[cut + 2 :]
            self.frames += [f for f in parse_frames(done.decode()) if f.data is not None]


StopWhen = Callable[[list[Frame]], bool]


def after_events(n: int) -> StopWhen:
    return lambda frames: len(frames) >= n


def after_tokens(n: int) -> StopWhen:
    return lambda frames: sum(f.type == "token" for f in frames) >= n


async def read_sse(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    stop_when: StopWhen | None = None,
    cut_bytes: int | None = None,
    on_events: Callable[[list[Frame]], object] | None = None,
    on_headers: Callable[[dict[str, str]], object] | None = None,
    **kwargs: Any,
) -> Read:
    """Read one SSE response until the server ends it, or hang up once `stop_when(events)` is
    true or after `cut_bytes` bytes of body (a cut anywhere, also inside a frame).
    `on_events(events so far)` is called as events arrive (to act in the middle of a read),
    `on_headers(headers)` when the response starts."""
    events = _Events()
    cut = broken = False
    async with client.stream(method, url, **kwargs) as response:
        headers = dict(response.headers)
        if on_headers is not None:
            on_headers(headers)
        if response.status_code != 200:
            await response.aread()
            return Read(response.status_code, [], headers)
        received = 0
        try:
            if cut_bytes is not None and cut_bytes <= 0:
                cut = True
            else:
                async for chunk in response.aiter_raw():
                    if cut_bytes is not None and received + len(chunk) >= cut_bytes:
                        events.feed(chunk[: cut_bytes - received])
                        cut = True
                        break
                    received += len(chunk)
                    events.feed(chunk)
                    if on_events is not None:
                        on_events(events.frames)
                    if stop_when is not None and stop_when(events.frames):
                        cut = True
                        break
        except (httpx.RemoteProtocolError, httpx.ReadError):
            broken = True  # the replica went away mid-response: what we got is what counts
    return Read(response.status_code, events.frames, headers, cut=cut, broken=broken)


class Live:
    """A read going on in a task, whose events so far the test can wait for and act on."""

    def __init__(self) -> None:
        self.frames: list[Frame] = []
        self.headers: dict[str, str] = {}
        self._waiters: list[tuple[StopWhen, asyncio.Event]] = []
        self.task: asyncio.Task[Read]

    def start(self, headers: dict[str, str]) -> None:
        self.headers = headers

    def see(self, frames: list[Frame]) -> None:
        self.frames = frames
        for when, event in self._waiters:
            if not event.is_set() and when(frames):
                event.set()

    async def reaches(self, when: StopWhen, within_s: float = 30) -> bool:
        """Wait until `when(events so far)`; False when the read ended before it."""
        if when(self.frames):
            return True
        event = asyncio.Event()
        self._waiters.append((when, event))
        waiting = asyncio.ensure_future(event.wait())
        try:
            await asyncio.wait(
                {waiting, self.task}, timeout=within_s, return_when="FIRST_COMPLETED"
            )
        finally:
            waiting.cancel()
        if event.is_set():
            return True
        if self.task.done():
            return False
        pytest.fail(f"not reached within {within_s} s ({len(self.frames)} events read)")

    async def until(self, when: StopWhen, within_s: float = 30) -> None:
        """Wait until `when(events so far)`; fail at once when the read ends before it."""
        if not await self.reaches(when, within_s):
            got = self.task.result()
            pytest.fail(f"the read ended first: HTTP {got.status}, {len(got.frames)} events")

    async def result(self) -> Read:
        return await self.task


def live_read(client: httpx.AsyncClient, method: str, url: str, **kwargs: Any) -> Live:
    """`read_sse` in a task (see `Live`)."""
    live = Live()
    live.task = asyncio.create_task(
        read_sse(client, method, url, on_events=live.see, on_headers=live.start, **kwargs)
    )
    return live


def stream_id_of(frames: Sequence[Frame]) -> str:
    assert frames and frames[0].id, f"no event with an id: {frames!r}"
    return frames[0].id.rsplit(":", 1)[0]


def last_id(frames: Sequence[Frame]) -> str:
    last = frames[-1].id
    assert last is not None
    return last


async def read_stream(
    client: httpx.AsyncClient,
    base_url: str,
    stream_id: str,
    last_event_id: str | None = None,
    *,
    via: str = "streams",
    message: str = "resume",
    **kwargs: Any,
) -> Read:
    """Read a stream after `last_event_id` (from its start without one) on `base_url`:
    through `GET /api/streams/{id}` (`via="streams"`) or as an EventSource reconnects, through
    `GET /api/chat/stream?message=...` with `Last-Event-ID` (`via="chat"`)."""
    headers = dict(kwargs.pop("headers", {}))
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    if via == "chat":
        assert last_event_id is not None, "without Last-Event-ID this would start a new stream"
        url = f"{base_url}/api/chat/stream"
        kwargs["params"] = {"message": message}
    else:
        url = f"{base_url}/api/streams/{stream_id}"
    return await read_sse(client, "GET", url, headers=headers, **kwargs)


async def resume(
    client: httpx.AsyncClient, base_url: str, frames: Sequence[Frame], **kwargs: Any
) -> Read:
    """Resume the stream of `frames` after its last event, on `base_url`."""
    return await read_stream(client, base_url, stream_id_of(frames), last_id(frames), **kwargs)


@dataclass
class Followed:
    frames: list[Frame]  # what the client kept: its events, over every connection
    set_aside: list[dict[str, Any]] = field(default_factory=list)  # retried errors
    refusals: list[int] = field(default_factory=list)  # non-200 answers to a resume


async def follow(
    client: httpx.AsyncClient,
    base_urls: Sequence[str],
    frames: Sequence[Frame],
    *,
    retry_codes: Sequence[str] = (),
    max_reads: int = 40,
    pause_s: float = 0.25,
    **kwargs: Any,
) -> Followed:
    """Resume the stream of `frames` until a terminal event, as a client that reconnects does:
    on the next of `base_urls` whenever a replica refuses (503), is unreachable or breaks the
    response. A retryable `error` whose code is in `retry_codes` is set aside and the stream
    resumed from the event before it, unless the same error comes back at the same place three
    times (then the log holds it: it is the stream's end)."""
    kept = list(frames)
    out = Followed(kept)
    repeats = 0
    for attempt in range(max_reads):
        if kept and kept[-1].type in TERMINAL:
            break
        base = base_urls[attempt % len(base_urls)]
        try:
            got = await resume(client, base, kept, **kwargs)
        except httpx.TransportError:
            await asyncio.sleep(pause_s)
            continue
        if got.status != 200:
            out.refusals.append(got.status)
            if got.status == 204:
                break  # the server says there is nothing more: the assertion will tell
            await asyncio.sleep(pause_s)
            continue
        kept += got.frames
        end = got.terminal
        if end is not None and end.type == "error":
            error = end.json
            if error["code"] in retry_codes and error.get("retryable"):
                same = bool(out.set_aside) and out.set_aside[-1] == {**error, "id": end.id}
                repeats = repeats + 1 if same else 1
                if repeats < 3:
                    out.set_aside.append({**error, "id": end.id})
                    kept.pop()
                    await asyncio.sleep(pause_s)
    return out


def expected_text(message: str, tokens: int | None, reply: str | None = None) -> str:
    """What the scripted provider streams for `message` in `tokens` pieces."""
    return "".join(split_pieces(default_reply(message) if reply is None else reply, tokens))


def text_of(frames: Sequence[Frame]) -> str:
    return "".join(f.json["content"] for f in frames if f.type == "token")


def _first_difference(ids: list[str | None], want: list[str]) -> str:
    for i, (got, exp) in enumerate(zip(ids, want, strict=False)):
        if got != exp:
            around = ids[max(0, i - 3) : i + 3]
            return f"event {i}: id {got!r}, expected {exp!r} (ids around it: {around})"
    return f"{len(ids)} ids, expected {len(want)}"


def assert_exact(
    frames: Sequence[Frame],
    *,
    text: str,
    terminal: str = "done",
    codes: Sequence[str] = (),
) -> str:
    """Everything a client read is one exact stream: ids `<stream>:1..n` consecutive, token
    indexes 0..k-1, exactly one terminal event, the last; with `done` the text is `text`,
    with `error` (of one of `codes`) the text is a prefix of it. Returns the text read."""
    assert frames, "the client read no event at all"
    stream_id = stream_id_of(frames)
    ids = [f.id for f in frames]
    want = [f"{stream_id}:{i}" for i in range(1, len(frames) + 1)]
    assert ids == want, "not one exact sequence: " + _first_difference(ids, want)
    types = [f.type for f in frames]
    ends = [i for i, t in enumerate(types) if t in TERMINAL]
    assert ends == [len(frames) - 1], (
        f"terminal events at {ends} of {len(frames)} (types at the end: {types[-5:]})"
    )
    indexes = [f.json["index"] for f in frames if f.type == "token"]
    assert indexes == list(range(len(indexes))), "token indexes are not 0..k-1"
    got = text_of(frames)
    last = frames[-1].json
    assert last["type"] == terminal, f"the stream ended with {last}, expected {terminal}"
    if terminal == "done":
        assert got == text, f"{len(got)} characters of {len(text)}; first difference at " + str(
            next((i for i, (a, b) in enumerate(zip(got, text, strict=False)) if a != b), None)
        )
    else:
        assert last["code"] in codes, f"error code {last['code']}, expected one of {codes}"
        assert text.startswith(got), "the text before the error is not a prefix of the answer"
    return got


async def answer_of(
    client: httpx.AsyncClient,
    base_url: str,
    session_id: str,
    *,
    settled: bool = True,
    within_s: float = 30.0,
    **kwargs: Any,
) -> dict[str, Any]:
    """The session's last message (the answer); with `settled`, polled until it is no longer
    `streaming` (a replica records an answer's end a moment after its terminal event)."""
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        response = await client.get(f"{base_url}/api/sessions/{session_id}", **kwargs)
        assert response.status_code == 200, response.text
        message: dict[str, Any] = response.json()["messages"][-1]
        if not settled or message["status"] != "streaming":
            return message
        if asyncio.get_running_loop().time() > deadline:
            return message
        await asyncio.sleep(0.1)


# -- processes


@contextlib.contextmanager
def fresh_database(prefix: str) -> Iterator[str]:
    """A PostgreSQL database of its own (CREATE DATABASE <prefix>_<hex>), dropped after."""
    import asyncpg

    base = postgres_url()
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(base, timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    try:
        asyncio.run(run(f"CREATE DATABASE {name}"))
    except Exception as exc:
        unavailable("PostgreSQL", exc)
    parts = urlsplit(base)
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        asyncio.run(run(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@dataclass
class Pair:
    a: ServerProcess
    b: ServerProcess

    @property
    def urls(self) -> tuple[str, str]:
        return self.a.url, self.b.url


@contextlib.contextmanager
def two_replicas(
    tmp_path: Path, redis: OwnRedis, database_url: str, **settings: Any
) -> Iterator[Pair]:
    """Two `tokenrelay serve` processes (provider `scripted`) on one Redis (of the test's own)
    and one PostgreSQL database; their logs are printed when the test fails."""
    common: dict[str, Any] = {
        "provider": "scripted",
        "redis_url": redis.url,
        "redis_prefix": f"trf{uuid.uuid4().hex[:8]}",
        "database_url": database_url,
        "log_level": os.environ.get("TOKENRELAY_TEST_FAULT_LOG_LEVEL", "warning"),
        **settings,
    }
    with serve(tmp_path, "a", **common) as a, serve(tmp_path, "b", **common) as b:
        try:
            yield Pair(a, b)
        except BaseException:
            for name, server in (("a", a), ("b", b)):
                print(f"----- replica {name} ({server.url}) log, last 60 lines -----")
                print("\n".join(server.output().splitlines()[-60:]))
            raise


def need_setting(name: str) -> None:
    """Fail (not skip) when a setting the case depends on does not exist: without it the case
    would pass against a server that ignores it."""
    from tokenrelay.config import Settings

    if name not in Settings.model_fields:
        pytest.fail(f"tokenrelay has no setting {name!r}: this fault case cannot be set up")
