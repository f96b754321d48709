"""Start the servers under test as subprocesses and read their CPU time and memory from /proc."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

SERVER_NAMES = ("tokenrelay", "naive", "sse_starlette", "floor")
STREAM_PATH = "/api/chat/stream"


def has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _children(pid: int) -> list[int]:
    out: list[int] = []
    path = Path(f"/proc/{pid}/task/{pid}/children")
    with contextlib.suppress(OSError):
        for child in path.read_text().split():
            out.append(int(child))
            out.extend(_children(int(child)))
    return out


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process (its own threads, not waited-for children)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = text[text.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_rss(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in bytes."""
    rss = hwm = 0
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) * 1024
    return rss, hwm


def loaded_libs(pid: int) -> set[str]:
    """Which event loop / HTTP parser the process has loaded (from its memory maps)."""
    found: set[str] = set()
    with contextlib.suppress(OSError):
        maps = Path(f"/proc/{pid}/maps").read_text()
        for lib in ("uvloop", "httptools", "orjson"):
            if f"/{lib}/" in maps:
                found.add(lib)
    return found


@dataclass
class Sample:
    cpu_s: float
    rss: int
    hwm: int
    t: float


@dataclass
class Server:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    workdir: Path | None = None
    log_path: Path | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def pids(self) -> list[int]:
        return [self.pid, *_children(self.pid)]

    def sample(self) -> Sample:
        cpu = rss = hwm = 0.0
        for pid in self.pids():
            cpu += proc_cpu_s(pid)
            r, h = proc_rss(pid)
            rss += r
            hwm += h
        return Sample(cpu_s=cpu, rss=int(rss), hwm=int(hwm), t=time.perf_counter())

    def start(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix=f"relaybench-{self.name}-"))
        self.log_path = self.workdir / "server.log"
        argv = [
            a.replace("{port}", str(self.port)).replace("{data}", str(self.workdir))
            for a in self.argv
        ]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        for key, value in self.env.items():
            env[key] = value.replace("{data}", str(self.workdir))
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                argv,
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_raise_nofile,
                start_new_session=True,
            )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_port(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited: {self.log_tail()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 0.5),
            ):
                return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not listen on {self.port} in {timeout_s}s")

    def get(self, path: str, timeout_s: float = 5.0) -> str:
        url = f"http://127.0.0.1:{self.port}{path}"
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return str(resp.read().decode("utf-8", "replace"))

    def log_tail(self, n: int = 20) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)


def uvicorn_loop_args() -> list[str]:
    """The same loop/parser choice uvicorn's `auto` makes, spelled out for the record."""
    return [
        "--loop",
        "uvloop" if has_module("uvloop") else "asyncio",
        "--http",
        "httptools" if has_module("httptools") else "h11",
    ]


def make_server(name: str, env: dict[str, str] | None = None) -> Server:
    port = free_port()
    py = sys.executable
    common = ["--host", "127.0.0.1", "--port", "{port}", "--workers", "1", "--no-access-log"]
    if name == "tokenrelay":
        # no access log line, as every other server here runs with uvicorn's --no-access-log
        # (its `stream_finished` line stays: that is the pipeline's own); a disconnect cancels
        # at once, as in every baseline (the default keeps generating for 60 s so a client
        # can resume): that is what the cancel scenario times
        tr_env = {
            "TOKENRELAY_HOST": "127.0.0.1",
            "TOKENRELAY_ACCESS_LOG": "false",
            "TOKENRELAY_DISCONNECT_GRACE_S": "0",
            **(env or {}),
        }
        if has_module("tokenrelay.cli"):
            exe = VENV_BIN / "tokenrelay"
            argv = [str(exe), "serve", "--provider", "scripted", "--port", "{port}"]
            return Server(name, [*argv, "--data-dir", "{data}"], env=tr_env, port=port)
        # until the CLI exists: the same app through uvicorn's factory mode
        tr_env |= {"TOKENRELAY_PROVIDER": "scripted", "TOKENRELAY_DATA_DIR": "{data}"}
        app = "tokenrelay.server.app:create_app"
        argv = [py, "-m", "uvicorn", app, "--factory", *common, *uvicorn_loop_args()]
        return Server(name, [*argv, "--log-level", "warning"], env=tr_env, port=port)
    if name == "naive":
        app = "bench.relay.baselines.naive_app:app"
    elif name == "sse_starlette":
        app = "bench.relay.baselines.sse_starlette_app:app"
    elif name == "floor":
        loop = "uvloop" if has_module("uvloop") else "asyncio"
        argv = [py, "-m", "bench.relay.baselines.floor", "--port", "{port}", "--loop", loop]
        return Server(name, argv, env=env or {}, port=port)
    else:
        raise ValueError(f"unknown server {name!r}; choose from {', '.join(SERVER_NAMES)}")
    argv = [py, "-m", "uvicorn", app, *common, *uvicorn_loop_args(), "--log-level", "warning"]
    return Server(name, argv, env=env or {}, port=port)


def tokenrelay_available() -> str | None:
    """None when `tokenrelay serve` can be tried, else the reason it cannot."""
    if not (REPO / "src/tokenrelay/server/app.py").exists():
        return "src/tokenrelay/server/app.py does not exist yet"
    if not (REPO / "src/tokenrelay/providers/scripted.py").exists():
        return "src/tokenrelay/providers/scripted.py does not exist yet"
    return None
