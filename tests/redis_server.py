"""A `redis-server` of a test's own, on a free port, that the test may stop, restart and kill.

Fault tests never touch the shared Redis: they start this one (no persistence, so a restart
loses everything, as a Redis without AOF/RDB does) and take it away when the test needs it.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import free_port


class OwnRedis:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start (or start again, on the same port) with nothing on disk."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while not self.ping():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on port {self.port} did not start")
            time.sleep(0.02)

    def ping(self) -> bool:
        try:
            out = subprocess.run(
                ["redis-cli", "-p", str(self.port), "ping"],
                capture_output=True,
                timeout=5,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return False
        return out.stdout.strip() == b"PONG"

    def cli(self, *args: str) -> str:
        """Run one redis-cli command against this server; its output."""
        out = subprocess.run(
            ["redis-cli", "-p", str(self.port), *args],
            capture_output=True,
            timeout=10,
            check=True,
        )
        return out.stdout.decode()

    def stop(self) -> None:
        """Kill it (SIGKILL: no goodbye to the clients, nothing saved)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def restart(self, down_s: float = 0.0) -> None:
        """Kill, stay away `down_s`, start again empty on the same port."""
        self.stop()
        time.sleep(down_s)
        self.start()


@contextmanager
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    server = OwnRedis(tmp_path / "own-redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[OwnRedis]:
    """A redis-server of this test's own (see `own_redis`)."""
    with own_redis(tmp_path) as server:
        yield server
