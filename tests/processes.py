"""Real `tokenrelay serve` processes for end-to-end tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import httpx

from tests.conftest import free_port


class ServerProcess:
    def __init__(self, proc: subprocess.Popen[bytes], url: str, log: IO[bytes], log_path: Path):
        self.proc = proc
        self.url = url
        self._log = log
        self.log_path = log_path

    def terminate(self) -> None:
        """SIGTERM: the way an orchestrator stops a replica."""
        self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = 60) -> int:
        return self.proc.wait(timeout=timeout)

    @property
    def process(self) -> subprocess.Popen[bytes]:
        return self.proc

    def log(self) -> str:
        return self.output()

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")


@contextmanager
def serve(
    tmp_path: Path,
    name: str,
    *,
    args: Sequence[str] = (),
    env: dict[str, str] | None = None,
    **settings: object,
) -> Iterator[ServerProcess]:
    """Start `tokenrelay serve [args]` with TOKENRELAY_* settings; wait until /readyz answers.

    A free port can be taken by another process between `free_port()` and the server's bind
    (other tests, other suites on the machine): such a start is tried again on a new port."""
    for attempt in range(3):
        try:
            server = _start(tmp_path, name, args=args, env=env, settings=settings)
        except _PortTaken:
            if attempt == 2:
                raise
            continue
        break
    try:
        yield server
    finally:
        proc = server.proc
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        server._log.close()


class _PortTaken(RuntimeError):
    pass


def _start(
    tmp_path: Path,
    name: str,
    *,
    args: Sequence[str],
    env: dict[str, str] | None,
    settings: dict[str, object],
) -> ServerProcess:
    port = free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENRELAY_")}
    full_env.update({f"TOKENRELAY_{k.upper()}": str(v) for k, v in settings.items()})
    full_env.setdefault("TOKENRELAY_DATA_DIR", str(tmp_path / f"data-{name}"))
    full_env.update(env or {})
    log_path = tmp_path / f"{name}.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tokenrelay.cli", "serve", "--port", str(port), *args],
        env=full_env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = ServerProcess(proc, f"http://127.0.0.1:{port}", log, log_path)
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            output = server.output()
            log.close()
            if "Address already in use" in output:
                raise _PortTaken(output)
            raise RuntimeError(f"server {name} exited early:\n{output}")
        try:
            if httpx.get(f"{server.url}/readyz", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            log.close()
            raise RuntimeError(f"server {name} did not start:\n{server.output()}")
        time.sleep(0.1)
