"""Two replicas behind Debian's nginx, configured with the block that docs/deployment.md tells
users to copy: that block is read from the page (only the replicas' addresses and the port are
put in), so the page and this test cannot drift apart.

Shown: events are not buffered, a resume through nginx lands on either replica and is exact,
and a replica taken out mid-stream (SIGTERM) is survived by its client through nginx.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.e2e.faults_harness import (
    Pair,
    after_events,
    after_tokens,
    answer_of,
    assert_exact,
    expected_text,
    follow,
    fresh_database,
    live_read,
    read_sse,
    resume,
    two_replicas,
)
from tests.redis_server import OwnRedis, own_redis

DEPLOYMENT_MD = Path(__file__).resolve().parents[2] / "docs" / "deployment.md"
NGINX = Path(os.environ.get("TOKENRELAY_NGINX", "/usr/sbin/nginx"))


def documented_block() -> str:
    """The nginx block of docs/deployment.md's "nginx" section, as users copy it."""
    text = DEPLOYMENT_MD.read_text()
    section = text[text.index("\n## nginx\n") :]
    match = re.search(r"```nginx\n(.*?)```", section, re.S)
    assert match, "docs/deployment.md has no ```nginx block in its nginx section"
    return match.group(1)


def configured(block: str, replicas: tuple[str, str], port: int) -> str:
    """The documented block with these replicas in its upstream and this port to listen on."""
    hosts = iter(url.removeprefix("http://") for url in replicas)
    block, servers = re.subn(
        r"^(\s*server\s+)\d+\.\d+\.\d+\.\d+:\d+",
        lambda m: m.group(1) + next(hosts),
        block,
        flags=re.M,
    )
    block, listens = re.subn(
        r"^(\s*listen\s+)[^;]+;", rf"\g<1>127.0.0.1:{port};", block, flags=re.M
    )
    assert (servers, listens) == (2, 1), (
        "the documented block should have two upstream servers and one listen directive"
    )
    return block


def nginx_conf(block: str, prefix: Path) -> str:
    # the test's own frame around the documented block: files under `prefix`, and a header
    # naming the replica that answered (inherited by the block's location)
    return f"""
daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    add_header X-Upstream $upstream_addr always;
{block}
}}
"""


@contextlib.contextmanager
def run_nginx(tmp_path: Path, replicas: tuple[str, str]) -> Iterator[str]:
    if not NGINX.exists() or shutil.which("nginx", path=str(NGINX.parent)) is None:
        message = (
            f"nginx is missing at {NGINX}: run scripts/install-nginx.sh (apt-get install nginx)"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    port = free_port()
    conf = prefix / "nginx.conf"
    conf.write_text(nginx_conf(configured(documented_block(), replicas, port), prefix))
    log = (prefix / "stderr.log").open("wb")
    proc = subprocess.Popen(
        [str(NGINX), "-p", f"{prefix}/", "-c", str(conf), "-e", str(prefix / "error.log")],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"nginx exited: {(prefix / 'stderr.log').read_text()}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("nginx did not answer /healthz")
            time.sleep(0.05)
        yield url
    except BaseException:
        print("----- nginx error.log -----")
        print((prefix / "error.log").read_text(errors="replace")[-4000:])
        raise
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    with fresh_database("trnginx") as url:
        yield url


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[OwnRedis]:
    with own_redis(tmp_path) as server:
        yield server


@contextlib.contextmanager
def behind_nginx(tmp_path: Path, redis: OwnRedis, database_url: str) -> Iterator[tuple[Pair, str]]:
    with (
        two_replicas(tmp_path, redis, database_url) as pair,
        run_nginx(tmp_path, pair.urls) as url,
    ):
        yield pair, url


def test_the_documented_block_is_what_runs() -> None:
    block = configured(documented_block(), ("http://127.0.0.1:1", "http://127.0.0.1:2"), 3)
    for directive in (
        "proxy_buffering off;",
        "proxy_http_version 1.1;",
        'proxy_set_header Connection "";',
        "proxy_read_timeout 1h;",
        "proxy_next_upstream error timeout http_502 http_503;",
    ):
        assert directive in block


@pytest.mark.timeout(90)
async def test_through_nginx_the_first_token_arrives_while_the_answer_is_still_generated(
    tmp_path: Path, redis: OwnRedis, database_url: str
) -> None:
    body = {"message": "slow", "options": {"scripted": {"tokens": 4, "delay_ms": 1000}}}
    with behind_nginx(tmp_path, redis, database_url) as (_, url):
        async with httpx.AsyncClient(timeout=60) as http:
            reading = live_read(http, "POST", f"{url}/api/chat/stream", json=body)
            await reading.until(after_tokens(1))
            tokens_then = sum(f.type == "token" for f in reading.frames)
            session_id = reading.frames[0].json["session_id"]
            during = await answer_of(http, url, session_id, settled=False)
            got = await reading.result()
            after = await answer_of(http, url, session_id)
    # the first token came through on its own, while the replica was still generating
    assert tokens_then == 1
    assert during["status"] == "streaming"
    text = assert_exact(got.frames, text=expected_text("slow", 4))
    assert (after["status"], after["content"]) == ("complete", text)


@pytest.mark.timeout(90)
async def test_resumes_through_nginx_land_on_both_replicas_and_are_exact(
    tmp_path: Path, redis: OwnRedis, database_url: str
) -> None:
    body = {"message": "balanced", "options": {"scripted": {"tokens": 120, "delay_ms": 20}}}
    with behind_nginx(tmp_path, redis, database_url) as (pair, url):
        async with httpx.AsyncClient(timeout=60) as http:
            first = await read_sse(
                http, "POST", f"{url}/api/chat/stream", json=body, stop_when=after_events(5)
            )
            frames, served_by = list(first.frames), []
            while frames[-1].type not in ("done", "error") and len(served_by) < 100:
                got = await resume(http, url, frames, stop_when=after_events(15))
                assert got.status == 200, got.status
                served_by.append(got.headers.get("x-upstream"))
                frames += got.frames
            answer = await answer_of(http, url, frames[0].json["session_id"])
    text = assert_exact(frames, text=expected_text("balanced", 120))
    assert (answer["status"], answer["content"]) == ("complete", text)
    replicas = {u.removeprefix("http://") for u in pair.urls}
    assert set(served_by) == replicas, f"resumes were served by {served_by}"


@pytest.mark.timeout(120)
async def test_a_replica_taken_out_mid_stream_is_survived_through_nginx(
    tmp_path: Path, redis: OwnRedis, database_url: str
) -> None:
    body = {"message": "failover", "options": {"scripted": {"tokens": 150, "delay_ms": 20}}}
    with behind_nginx(tmp_path, redis, database_url) as (pair, url):
        async with httpx.AsyncClient(timeout=60) as http:
            reading = live_read(http, "POST", f"{url}/api/chat/stream", json=body)
            await reading.until(after_tokens(20))
            upstream = reading.headers.get("x-upstream", "")
            owner = next(r for r in (pair.a, pair.b) if r.url == f"http://{upstream}")
            owner.terminate()
            got = await reading.result()
            followed = await follow(http, [url], got.frames)
            answer = await answer_of(http, url, got.frames[0].json["session_id"])
            exit_code = await asyncio.to_thread(owner.wait, 60)
    text = assert_exact(followed.frames, text=expected_text("failover", 150))
    assert (answer["status"], answer["content"]) == ("complete", text)
    assert exit_code in (0, -15)
