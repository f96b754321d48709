"""The hostile edges of issue #19, over HTTP (raw sockets where a client library would refuse):
the stream cap and last_event_id, chunked bodies over the limit, undecodable multipart text,
deep JSON, lone surrogates, header limits, X-Forwarded-For, and backends that go away."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import postgres_url
from tests.processes import serve
from tests.redis_server import OwnRedis, own_redis
from tests.security.conftest import open_stream
from tests.tcp_proxy import TcpProxy

LONG = {"message": "hi", "options": {"scripted": {"tokens": 2000, "delay_ms": 20}}}


async def raw_request(url: str, head: bytes, body_chunks: list[bytes] = ()) -> bytes:  # type: ignore[assignment]
    """Send `head` (request line and headers, no blank line) and chunked `body_chunks`; the
    response's status line and headers."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(head + b"\r\n")
        try:
            for chunk in body_chunks:
                writer.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
                await writer.drain()
            if body_chunks:
                writer.write(b"0\r\n\r\n")
            await writer.drain()
        except ConnectionError:
            pass  # answered and closed while we were still sending: read what came
        return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
    finally:
        writer.close()


def status_of(head: bytes) -> int:
    return int(head.split(b" ", 2)[1])


# -- the stream cap cannot be bypassed by any form of last_event_id

BYPASSES = [
    ({"last_event_id": ""}, {}),
    ({"last_event_id": " "}, {}),
    ({"last_event_id": "not-an-id"}, {}),
    ({"last_event_id": ":"}, {}),
    ({}, {"Last-Event-ID": ""}),
    ({}, {"Last-Event-ID": "garbage"}),
    ({"last_event_id": ""}, {"Last-Event-ID": ""}),
]


async def test_empty_or_malformed_last_event_id_never_skips_the_open_stream_cap(
    live_server,
) -> None:
    async with (
        live_server(max_open_streams=1) as srv,
        httpx.AsyncClient(base_url=srv.url, timeout=30) as client,
    ):
        await open_stream(client, LONG)  # the one stream allowed; it runs on for the grace
        runner = srv.app.state.services.runner
        for params, headers in BYPASSES:
            response = await client.get(
                "/api/chat/stream", params={"message": "hi", **params}, headers=headers
            )
            assert response.status_code in (503, 422), (params, headers, response.status_code)
            assert runner.active == 1, (params, headers)


async def test_empty_last_event_id_never_skips_the_per_client_cap(live_server) -> None:
    async with (
        live_server(max_streams_per_client=1) as srv,
        httpx.AsyncClient(base_url=srv.url, timeout=30) as client,
    ):
        await open_stream(client, LONG)
        response = await client.get(
            "/api/chat/stream", params={"message": "hi", "last_event_id": ""}
        )
        assert response.status_code == 429, response.text
        assert srv.app.state.services.runner.active == 1


# -- chunked bodies over the limit: 413 on every route that reads a body

CHUNKED_ROUTES = [
    "/api/chat/stream",
    "/api/chat",
    "/v1/chat/completions",
    "/api/plans/generate",
    "/api/documents",
]


@pytest.mark.parametrize("path", CHUNKED_ROUTES)
async def test_chunked_body_over_the_limit_is_413(live_server, path: str) -> None:
    async with live_server(max_body_bytes=1000, rag_max_upload_bytes=2000) as srv:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n"
        ).encode()
        chunks = [b'{"message": "' + b"a" * 1000] + [b"a" * 1000] * 5 + [b'"}']
        answer = await raw_request(srv.url, head, chunks)
    assert status_of(answer) == 413, answer


# -- undecodable and over-deep input

MULTIPART = (
    b"--XX\r\n"
    b'Content-Disposition: form-data; name="title"\r\n\r\n'
    b"\xff\xfe not utf-8\r\n"
    b"--XX\r\n"
    b'Content-Disposition: form-data; name="file"; filename="a.txt"\r\n'
    b"Content-Type: text/plain\r\n\r\n"
    b"hello world\r\n"
    b"--XX--\r\n"
)


async def test_non_utf8_multipart_text_field_is_422(live_server) -> None:
    async with live_server() as srv, httpx.AsyncClient(base_url=srv.url) as client:
        response = await client.post(
            "/api/documents",
            content=MULTIPART,
            headers={"Content-Type": "multipart/form-data; boundary=XX"},
        )
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "VALIDATION_ERROR"


def nested(depth: int) -> str:
    return '{"a": ' * depth + "1" + "}" * depth


@pytest.mark.parametrize("depth", [65, 100_000])
async def test_json_nested_past_the_limit_is_422(live_server, depth: int) -> None:
    deep = nested(depth)
    async with (
        live_server(max_body_bytes=2_000_000) as srv,
        httpx.AsyncClient(base_url=srv.url) as client,
    ):
        as_json = await client.post(
            "/api/documents",
            content=f'{{"text": "hello", "metadata": {deep}}}'.encode(),
            headers={"Content-Type": "application/json"},
        )
        as_form = await client.post(
            "/api/documents",
            files={"file": ("a.txt", b"hello world", "text/plain")},
            data={"metadata": deep},
        )
        chat = await client.post(
            "/api/chat",
            content=f'{{"message": "hi", "options": {{"scripted": {deep}}}}}'.encode(),
            headers={"Content-Type": "application/json"},
        )
    for response in (as_json, as_form, chat):
        assert response.status_code == 422, (response.request.url, response.text[:300])
        assert response.json()["code"] == "VALIDATION_ERROR"


async def test_json_within_the_depth_limit_is_accepted(live_server) -> None:
    async with live_server() as srv, httpx.AsyncClient(base_url=srv.url) as client:
        response = await client.post(
            "/api/documents",
            content=f'{{"text": "hello", "metadata": {nested(60)}}}'.encode(),
            headers={"Content-Type": "application/json"},
        )
    assert response.status_code == 201, response.text


SURROGATE_BODIES = [
    ("/api/chat/stream", b'{"message": "hi \\ud800 there"}'),
    ("/api/chat", b'{"message": "\\udfff"}'),
    ("/api/chat", b'{"message": "hi", "options": {"model": "a\\ud800"}}'),
    (
        "/v1/chat/completions",
        b'{"model": "scripted", "messages": [{"role": "user", "content": "a\\ud800"}],'
        b' "stream": true}',
    ),
    (
        "/v1/chat/completions",
        b'{"model": "scripted", "messages": [{"role": "user", "content": "a\\uD800"}]}',
    ),
]


@pytest.mark.parametrize(("path", "raw"), SURROGATE_BODIES)
async def test_lone_surrogate_is_400_before_the_stream_starts(
    live_server, path: str, raw: bytes
) -> None:
    async with live_server() as srv, httpx.AsyncClient(base_url=srv.url) as client:
        response = await client.post(
            path, content=raw, headers={"Content-Type": "application/json"}
        )
        running = srv.app.state.services.runner.active
    assert response.status_code == 400, response.text
    body = response.json()
    code = body["error"]["code"] if path.startswith("/v1/") else body["code"]
    assert code == "VALIDATION_ERROR"
    assert running == 0


async def test_a_surrogate_pair_escape_is_fine(live_server) -> None:
    async with live_server() as srv, httpx.AsyncClient(base_url=srv.url) as client:
        response = await client.post(
            "/api/chat",
            content=b'{"message": "smile \\ud83d\\ude00"}',
            headers={"Content-Type": "application/json"},
        )
    assert response.status_code == 200
    assert "\U0001f600" in response.json()["content"]


# -- header limits: 431


async def test_too_many_headers_is_431(live_server) -> None:
    async with live_server() as srv, httpx.AsyncClient(base_url=srv.url) as client:
        many = {f"x-h{i}": "v" for i in range(150)}
        too_many = await client.get("/healthz", headers=many)
        fine = await client.get("/healthz", headers={f"x-h{i}": "v" for i in range(50)})
    assert too_many.status_code == 431 and too_many.json()["code"] == "VALIDATION_ERROR"
    assert "TOKENRELAY_" not in too_many.json()["message"] + too_many.json()["suggestion"]
    assert fine.status_code == 200


@pytest.mark.parametrize("size", [17_000, 1_000_000])
async def test_oversized_headers_are_431(live_server, size: int) -> None:
    async with live_server() as srv:
        head = b"GET /api/sessions HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * size + b"\r\n"
        answer = await raw_request(srv.url, head)
    assert status_of(answer) == 431, answer[:200]


async def test_header_limits_are_settings(live_server) -> None:
    async with (
        live_server(max_header_count=200, max_header_bytes=64_000) as srv,
        httpx.AsyncClient(base_url=srv.url) as client,
    ):
        response = await client.get(
            "/healthz", headers={**{f"x-h{i}": "v" for i in range(150)}, "x-big": "a" * 20_000}
        )
    assert response.status_code == 200


# -- X-Forwarded-For: trusted only from the proxies listed in forwarded_allow_ips


def _rate_limited_pair(url: str) -> tuple[int, int]:
    """Two requests from 'different clients' per X-Forwarded-For, with a burst of 1."""
    with httpx.Client(base_url=url) as client:
        first = client.get("/api/sessions", headers={"X-Forwarded-For": "203.0.113.1"})
        second = client.get("/api/sessions", headers={"X-Forwarded-For": "203.0.113.2"})
    return first.status_code, second.status_code


def test_x_forwarded_for_is_ignored_by_default(tmp_path: Path) -> None:
    limits = {"provider": "scripted", "rate_limit_per_minute": 1, "rate_limit_burst": 1}
    with serve(tmp_path, "default", **limits) as server:
        assert _rate_limited_pair(server.url) == (200, 429)  # both are 127.0.0.1
    with serve(tmp_path, "trusted", forwarded_allow_ips="127.0.0.1", **limits) as server:
        assert _rate_limited_pair(server.url) == (200, 200)  # two clients behind the proxy


# -- backends down: 503 BACKEND_UNAVAILABLE at the boundary; /readyz says which


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[OwnRedis]:
    with own_redis(tmp_path) as server:
        yield server


def commands_processed(server: OwnRedis) -> int:
    return int(server.cli("info", "stats").split("total_commands_processed:")[1].split()[0])


async def test_rate_limiter_redis_down_is_503_not_500(live_server, redis_server: OwnRedis) -> None:
    settings: dict[str, Any] = {"redis_url": redis_server.url, "rate_limit_per_minute": 6000}
    async with live_server(**settings) as srv, httpx.AsyncClient(base_url=srv.url) as client:
        assert (await client.get("/readyz")).status_code == 200
        redis_server.stop()
        answers = [
            await client.get("/api/sessions"),
            await client.post("/api/chat", json={"message": "hi"}),
            await client.post("/api/chat/stream", json={"message": "hi"}),
            await client.post(
                "/v1/chat/completions",
                json={"model": "scripted", "messages": [{"role": "user", "content": "hi"}]},
            ),
        ]
        for response in answers:
            assert response.status_code == 503, (response.request.url, response.text)
            assert response.headers["retry-after"].isdigit()
            body = response.json()
            error = body.get("error", body)
            assert error["code"] == "BACKEND_UNAVAILABLE"
            assert "TOKENRELAY_" not in error["message"] + error["suggestion"]
        for _ in range(300):  # the last answer is kept for a second
            ready = await client.get("/readyz")
            if ready.status_code == 503:
                break
            await asyncio.sleep(0.05)
        assert ready.status_code == 503 and ready.json()["unreachable"] == ["redis"]
        redis_server.start()
        for _ in range(300):
            ready = await client.get("/readyz")
            if ready.status_code == 200:
                break
            await asyncio.sleep(0.05)
        assert ready.status_code == 200 and ready.json()["backends"] == {"redis": "ok"}


async def test_readyz_reports_postgres_unreachable_and_recovers(
    live_server, postgres_settings: dict[str, Any]
) -> None:
    target = urlsplit(postgres_url())
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432)
    await proxy.start()
    url = postgres_url().replace(f":{target.port}", f":{proxy.port}", 1)
    try:
        async with (
            live_server(**{**postgres_settings, "database_url": url}) as srv,
            httpx.AsyncClient(base_url=srv.url) as client,
        ):
            assert (await client.get("/readyz")).status_code == 200
            await proxy.cut()
            for _ in range(300):
                ready = await client.get("/readyz")
                if ready.status_code == 503:
                    break
                await asyncio.sleep(0.05)
            assert ready.status_code == 503 and ready.json()["unreachable"] == ["postgres"]
            await proxy.restore()
            for _ in range(300):
                ready = await client.get("/readyz")
                if ready.status_code == 200:
                    break
                await asyncio.sleep(0.05)
            assert ready.status_code == 200, ready.text
    finally:
        await proxy.cut()


async def test_readyz_answers_a_probe_storm_from_one_check(
    live_server, redis_server: OwnRedis
) -> None:
    async with (
        live_server(redis_url=redis_server.url) as srv,
        httpx.AsyncClient(base_url=srv.url) as client,
    ):
        before = commands_processed(redis_server)
        answers = await asyncio.gather(*(client.get("/readyz") for _ in range(50)))
        after = commands_processed(redis_server)
    assert {a.status_code for a in answers} == {200}
    assert after - before < 25  # not one ping per probe (the log's own commands run too)
    json.dumps(answers[0].json())
