"""The fault suite: two real replicas on a Redis of the test's own and a fresh PostgreSQL
database, and the faults a deployment meets. Each case asserts everything a client read, over
every connection, as one exact stream (ids consecutive, nothing lost, nothing repeated, one
terminal event, the last) and the answer the session keeps.

The table of guarantees in docs/protocol.md and docs/deployment.md names these tests.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.faults_harness import (
    Followed,
    Read,
    after_events,
    after_tokens,
    answer_of,
    assert_exact,
    complete_events,
    expected_text,
    follow,
    fresh_database,
    live_read,
    need_setting,
    read_sse,
    read_stream,
    resume,
    stream_id_of,
    text_of,
    two_replicas,
)
from tests.helpers import Frame
from tests.redis_server import OwnRedis, own_redis

LEASE_S = 2


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    with fresh_database("trfault") as url:
        yield url


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[OwnRedis]:
    with own_redis(tmp_path) as server:
        yield server


def _body(message: str, **scripted: Any) -> dict[str, Any]:
    return {"message": message, "options": {"max_tokens": 32_768, "scripted": scripted}}


def _same(one: list[Frame], other: list[Frame]) -> bool:
    return [(f.id, f.data) for f in one] == [(f.id, f.data) for f in other]


@pytest.mark.timeout(90)
async def test_kill_9_of_the_owner_ends_in_one_retryable_error_after_the_last_event_and_an_interrupted_answer(  # noqa: E501
    tmp_path: Path, redis: OwnRedis, database_url: str
) -> None:
    need_setting("stream_lease_s")
    # silent after 20 pieces: what the client read is surely in Redis when the owner dies
    body = _body("kill", tokens=150, delay_ms=10, pause_after=20, pause_ms=120_000)
    # the lease is the owner's; the heartbeat in the session database is the sweep's signal
    settings = {"stream_lease_s": LEASE_S, "replica_heartbeat_s": 1}
    with two_replicas(tmp_path, redis, database_url, **settings) as pair:
        async with httpx.AsyncClient(timeout=60) as http:
            url = f"{pair.a.url}/api/chat/stream"
            got = await read_sse(http, "POST", url, json=body, stop_when=after_tokens(20))
            stream_id = stream_id_of(got.frames)
            mirror = await read_stream(
                http, pair.b.url, stream_id, stop_when=lambda f: len(f) >= len(got.frames)
            )
            assert _same(mirror.frames[: len(got.frames)], got.frames)
            pair.a.process.kill()
            pair.a.process.wait(10)
            rest = await resume(http, pair.b.url, got.frames)
            again = await resume(http, pair.b.url, got.frames)
            answer = await answer_of(http, pair.b.url, got.frames[0].json["session_id"])
    frames = got.frames + rest.frames
    seen = assert_exact(
        frames, text=expected_text("kill", 150), terminal="error", codes=["BACKEND_UNAVAILABLE"]
    )
    assert frames[-1].json["retryable"] is True
    assert len(seen) and seen == text_of(got.frames), "the error is right after the last event"
    assert _same(again.frames, rest.frames), "a second reader sees the same end"
    assert (answer["status"], answer["content"]) == ("interrupted", seen)


@pytest.mark.timeout(90)
async def test_sigterm_of_the_owner_hands_its_clients_over_and_the_answer_completes(
    tmp_path: Path, redis: OwnRedis, database_url: str
) -> None:
    body = _body("drain", tokens=150, delay_ms=20)
    with two_replicas(tmp_path, redis, database_url) as pair:
        async with httpx.AsyncClient(timeout=60) as http:
            reading = live_read(http, "POST", f"{pair.a.url}/api/chat/stream", json=body)
            await reading.until(after_tokens(20))
            pair.a.terminate()
            got = await asyncio.wait_for(reading.result(), 30)
            assert got.terminal is None, "the draining owner ended its response with an event"
            followed = await follow(http, [pair.b.url], got.frames)
            answer = await answer_of(http, pair.b.url, got.frames[0].json["session_id"])
            exit_code = await asyncio.to_thread(pair.a.wait, 60)
    text = assert_exact(followed.frames, text=expected_text("drain", 150))
    assert (answer["status"], answer["content"]) == ("complete", text)
    assert exit_code in (0, -15)


@pytest.mark.timeout(90)
async def test_a_model_silent_for_three_leases_is_followed_to_the_end_never_declared_lost(
    tmp_path: Path, redis: OwnRedis, database_url: str
) -> None:
    need_setting("stream_lease_s")
    body = _body("think", tokens=30, delay_ms=10, pause_after=10, pause_ms=3000 * LEASE_S)
    with two_replicas(tmp_path, redis, database_url, stream_lease_s=LEASE_S) as pair:
        async with httpx.AsyncClient(timeout=60) as http:
            owner = live_read(http, "POST", f"{pair.a.url}/api/chat/stream", json=body)
            await owner.until(after_tokens(5))
            stream_id = stream_id_of(owner.frames)
            follower = asyncio.create_task(read_stream(http, pair.b.url, stream_id))
            await owner.until(after_tokens(10))
            # longer than a lease since the last event: only a renewed lease keeps it alive
            await asyncio.sleep(1.5 * LEASE_S)
            late = await read_stream(http, pair.b.url, stream_id)
            mine, theirs = await owner.result(), await follower
            answer = await answer_of(http, pair.b.url, mine.frames[0].json["session_id"])
    text = assert_exact(mine.frames, text=expected_text("think", 30))
    assert_exact(theirs.frames, text=text)
    assert_exact(late.frames, text=text)
    assert _same(theirs.frames, mine.frames) and _same(late.frames, mine.frames)
    assert (answer["status"], answer["content"]) == ("complete", text)


@pytest.mark.timeout(120)
async def test_a_redis_restart_without_persistence_mid_stream_loses_no_event_silently(
    tmp_path: Path, redis: OwnRedis, database_url: str
) -> None:
    keys = {"Authorization": "Bearer fault-key-0123456789"}
    other = {"Authorization": "Bearer other-key-0123456789"}
    body = _body("restart", tokens=200, delay_ms=15)
    full = expected_text("restart", 200)
    retry = ("BACKEND_UNAVAILABLE",)
    settings = {"api_keys": "fault:fault-key-0123456789,other:other-key-0123456789"}
    with two_replicas(tmp_path, redis, database_url, **settings) as pair:
        async with httpx.AsyncClient(timeout=60, headers=keys) as http:
            owner = live_read(http, "POST", f"{pair.a.url}/api/chat/stream", json=body)
            await owner.until(after_tokens(10))
            follower = asyncio.create_task(
                follow(http, [pair.b.url], owner.frames[:1], retry_codes=retry)
            )
            await owner.until(after_tokens(60))
            await asyncio.to_thread(redis.restart, 0.5)
            mine, theirs = await owner.result(), await follower
            answer = await answer_of(http, pair.b.url, mine.frames[0].json["session_id"])
            replay = await follow(http, [pair.b.url], mine.frames[:1], retry_codes=retry)
            stream_id = stream_id_of(mine.frames)
            foreign = await http.get(
                f"{pair.b.url}/api/streams/{stream_id}",
                headers={**other, "Accept": "application/json"},
            )
    text = assert_exact(mine.frames, text=full)
    assert (answer["status"], answer["content"]) == ("complete", text)
    for read in (theirs, replay):
        # the whole answer, or an explicit end at the gap: never a skip, never a silent end
        ending = read.frames[-1].type if read.frames else "done"
        assert_exact(read.frames, text=full, terminal=ending, codes=["STREAM_INCOMPLETE"])
    # the owner record came back with the stream: its owner reads it, nobody else
    assert foreign.status_code == 404, foreign.text


async def _client_kills(redis: OwnRedis, stop: asyncio.Event) -> int:
    killed = 0
    while not stop.is_set():
        proc = await asyncio.create_subprocess_exec(
            "redis-cli", "-p", str(redis.port), "CLIENT", "KILL", "TYPE", "normal",
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await proc.communicate()
        killed += int(out.strip() or 0)
        await asyncio.sleep(0.02)
    return killed


@pytest.mark.timeout(120)
async def test_a_storm_of_client_kills_during_fast_streams_loses_and_repeats_nothing(
    tmp_path: Path, redis: OwnRedis, database_url: str
) -> None:
    count, tokens = 6, 600
    full = expected_text("storm", tokens)
    body = _body("storm", tokens=tokens, delay_ms=2)
    retry = ("BACKEND_UNAVAILABLE",)
    with two_replicas(tmp_path, redis, database_url) as pair:
        async with httpx.AsyncClient(timeout=60) as http:

            async def one() -> tuple[Read, asyncio.Task[Followed]]:
                for _ in range(20):  # a 503 (Redis unreachable at the start) is retried
                    owner = live_read(http, "POST", f"{pair.a.url}/api/chat/stream", json=body)
                    if await owner.reaches(lambda f: bool(f)):
                        break
                    refused.append((await owner.result()).status)
                    await asyncio.sleep(0.1)
                theirs = asyncio.create_task(
                    follow(http, [pair.b.url], owner.frames[:1], retry_codes=retry)
                )
                return await owner.result(), theirs

            refused: list[int] = []
            stop = asyncio.Event()
            storm = asyncio.create_task(_client_kills(redis, stop))
            # the storm blows while the answers are generated (owners and followers reading),
            # then Redis is left alone: the followers must end exact, whatever they missed
            owned = await asyncio.gather(*(one() for _ in range(count)))
            stop.set()
            killed = await storm
            results = [(mine, await following) for mine, following in owned]
            replays = [
                await follow(http, [pair.b.url], mine.frames[:1], retry_codes=retry)
                for mine, _ in results
            ]
            answers = [
                await answer_of(http, pair.b.url, mine.frames[0].json["session_id"])
                for mine, _ in results
            ]
    assert killed > 0, "the storm killed no Redis connection"
    assert set(refused) <= {503}, f"a stream refused at its start other than with 503: {refused}"
    for (mine, theirs), replay, answer in zip(results, replays, answers, strict=True):
        text = assert_exact(mine.frames, text=full)
        assert_exact(theirs.frames, text=full)
        assert_exact(replay.frames, text=full)
        assert (answer["status"], answer["content"]) == ("complete", text)


@pytest.mark.timeout(150)
async def test_200_random_disconnects_and_resumes_across_both_replicas_end_in_the_exact_answer(
    tmp_path: Path, redis: OwnRedis, database_url: str
) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    count, tokens = 4, 300
    full = expected_text("cycles", tokens)
    body = _body("cycles", tokens=tokens, delay_ms=15)
    with two_replicas(tmp_path, redis, database_url) as pair:
        urls = pair.urls
        async with httpx.AsyncClient(timeout=60) as http:

            async def one() -> tuple[list[Frame], int]:
                first = await read_sse(
                    http,
                    "POST",
                    f"{rng.choice(urls)}/api/chat/stream",
                    json=body,
                    stop_when=after_events(1 + rng.randrange(4)),
                )
                frames, cycles = list(first.frames), 0
                while frames[-1].type not in ("done", "error") and cycles < 2000:
                    cycles += 1
                    got = await resume(
                        http,
                        rng.choice(urls),
                        frames,
                        via=rng.choice(("streams", "chat")),
                        message="cycles",
                        cut_bytes=rng.randrange(0, 700),
                    )
                    assert got.status == 200, f"cycle {cycles}: HTTP {got.status} (seed {seed})"
                    frames += got.frames
                return frames, cycles

            results = await asyncio.gather(*(one() for _ in range(count)))
            ends = [await resume(http, url, frames) for frames, _ in results for url in urls]
            answers = [
                await answer_of(http, urls[1], frames[0].json["session_id"])
                for frames, _ in results
            ]
    cycles = sum(n for _, n in results)
    assert cycles >= 200, f"only {cycles} disconnect/resume cycles (seed {seed})"
    for (frames, _), answer in zip(results, answers, strict=True):
        text = assert_exact(frames, text=full)
        assert (answer["status"], answer["content"]) == ("complete", text)
    # a resume at the end of a finished stream stops an EventSource: 204, on either replica
    assert [end.status for end in ends] == [204] * len(ends)


def _dechunk(data: bytes) -> tuple[bytes, bool]:
    """The body of a chunked HTTP/1.1 response read so far, and whether its end arrived."""
    out, pos = bytearray(), 0
    while True:
        eol = data.find(b"\r\n", pos)
        if eol < 0:
            return bytes(out), False
        size = int(data[pos:eol].split(b";")[0], 16)
        if size == 0:
            return bytes(out), True
        start = eol + 2
        out += data[start : start + size]
        if start + size + 2 > len(data):
            return bytes(out), False
        pos = start + size + 2


def _server_side_open(server_port: int, client_port: int) -> bool:
    """Whether the server still holds its end of this loopback connection open (ESTABLISHED in
    /proc/net/tcp), seen without reading from the client's end: a server that closes a stalled
    connection leaves it FIN-WAIT (data still queued) or gone (reset)."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, state = fields[1], fields[2], fields[3]
        ports = (int(local.split(":")[1], 16), int(remote.split(":")[1], 16))
        if ports == (server_port, client_port):
            return state == "01"
    return False


@pytest.mark.timeout(120)
async def test_a_reader_that_never_reads_is_closed_after_the_write_timeout_and_the_stream_resumes(
    tmp_path: Path, redis: OwnRedis, database_url: str
) -> None:
    need_setting("write_timeout_s")
    # ~6 MB of events (Korean: 3 bytes a character), far more than the kernel's socket buffers
    reply = "가나다라마바사아자차" * 100_000
    tokens = 30_000
    body = {
        "message": "stall",
        "options": {"max_tokens": 32_768, "scripted": {"reply": reply, "tokens": tokens}},
    }
    payload = json.dumps(body, ensure_ascii=False).encode()
    # closed for not draining, not for its buffer (a bound far above this stream's size)
    settings = {
        "write_timeout_s": 1,
        "max_connection_buffer_bytes": 64_000_000,
        "max_body_bytes": 2 * len(payload),
    }
    with two_replicas(tmp_path, redis, database_url, **settings) as pair:
        host, port = pair.a.url.removeprefix("http://").split(":")
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect((host, int(port)))
        try:
            sock.sendall(
                b"POST /api/chat/stream HTTP/1.1\r\nHost: %b\r\nContent-Type: application/json"
                b"\r\nContent-Length: %d\r\n\r\n%b" % (host.encode(), len(payload), payload)
            )
            raw = sock.recv(4096)  # the head and the first events; then it never reads again
            while b"\n\n" not in raw.partition(b"\r\n\r\n")[2]:
                raw += sock.recv(4096)
            head, _, rest = raw.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200"), head
            assert complete_events(_dechunk(rest)[0]), "no event before the stall"
            async with httpx.AsyncClient(timeout=60) as http:
                loop = asyncio.get_running_loop()
                deadline = loop.time() + 30  # write_timeout_s is 1
                client_port = sock.getsockname()[1]
                while _server_side_open(int(port), client_port) and loop.time() < deadline:
                    await asyncio.sleep(0.1)
                assert not _server_side_open(int(port), client_port), "the server kept it open"
                # what the client can still read of it: the connection's end, not the stream's
                sock.settimeout(10)
                try:
                    while chunk := sock.recv(1 << 20):
                        rest += chunk
                except (ConnectionResetError, TimeoutError):
                    pass
                body_read, ended = _dechunk(rest)
                frames = complete_events(body_read)
                assert not ended, "the server wrote the whole stream to a reader that never read"
                assert frames and frames[-1].type not in ("done", "error")
                other = await resume(http, pair.b.url, frames)
                answer = await answer_of(http, pair.b.url, frames[0].json["session_id"])
        finally:
            sock.close()
    text = assert_exact(frames + other.frames, text=expected_text("stall", tokens, reply))
    assert (answer["status"], answer["content"]) == ("complete", text)


def _guarantees(doc: Path) -> str:
    text = doc.read_text()
    rows = text[text.index("| fault | what a client sees |") :].splitlines()
    return "\n".join(row for row in itertools.takewhile(lambda r: r.startswith("|"), rows))


def test_the_guarantees_table_is_one_in_both_docs_and_names_tests_that_exist() -> None:
    docs = Path(__file__).resolve().parents[2] / "docs"
    table = _guarantees(docs / "protocol.md")
    assert _guarantees(docs / "deployment.md") == table
    named = re.findall(r"`((?:\w+/)*test_\w+)\.py::(test_\w+)`", table)
    assert len(named) >= 12
    tests = Path(__file__).parents[1]
    for module, test in named:  # a name is under tests/e2e/ or tests/
        path = tests / "e2e" / f"{module}.py"
        path = path if path.exists() else tests / f"{module}.py"
        assert f"def {test}(" in path.read_text(), test
