"""A real `tokenrelay serve` process on a free loopback port, for clients that need their own
event loop (the sync `openai` SDK, the CLI) or a browser."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.conftest import free_port


@dataclass
class ServerProcess:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextlib.contextmanager
def tokenrelay_serve(
    data_dir: Path, *args: str, env: dict[str, str] | None = None, start_timeout_s: float = 60
) -> Iterator[ServerProcess]:
    """`tokenrelay serve --provider scripted` (unless `args` say otherwise) until the block ends."""
    port = free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / "server.log"
    command = [sys.executable, "-m", "tokenrelay.cli", "serve", "--port", str(port)]
    command += ["--data-dir", str(data_dir)]
    if "--provider" not in args:
        command += ["--provider", "scripted"]
    command += list(args)
    full_env = {**os.environ, "TOKENRELAY_LOG_LEVEL": "warning", **(env or {})}
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=full_env)
    url = f"http://127.0.0.1:{port}"
    server = ServerProcess(url, process, log_path)
    try:
        deadline = time.monotonic() + start_timeout_s
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"tokenrelay serve exited early:\n{server.log()}")
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"tokenrelay serve did not start:\n{server.log()}")
            time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
