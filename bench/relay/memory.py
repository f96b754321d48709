"""Where the memory of an open idle stream goes, and how long garbage collections stop the loop.

    .venv/bin/python -m bench.relay.memory                  # tracemalloc, 1,000 idle streams
    .venv/bin/python -m bench.relay.memory --gc --streams 300   # collections under paced load

The relay bench's idle scenario says how much memory an idle stream holds (RSS); this says
where it is. It starts `tokenrelay serve` (scripted provider) under tracemalloc, opens the
streams the idle scenario opens, and compares snapshots taken before and while they are
open: bytes per stream by the innermost tokenrelay frame that allocated them (else the
innermost frame of uvicorn, Starlette, FastAPI or pydantic), with the allocation sites.
`--gc` instead times every collection (`gc.callbacks`) during one paced level: one long
young collection stops every stream at once, which is what the paced p99 gap sees
(bench/relay/findings.md, items 19 and 22). Not part of `make bench`: tracemalloc slows the
server down several times over.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import gc
import json
import os
import signal
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from bench.relay.loadgen import FixedSpec, hold_open, run_fixed
from bench.relay.run import body
from bench.relay.servers import STREAM_PATH, free_port

OURS = ("tokenrelay/",)
ENTRY = (  # on every stack: not an owner
    "tokenrelay/cli.py",
    "tokenrelay/server/serve.py",
    "tokenrelay/server/uvicorn_startup.py",
)
LIBRARIES = ("uvicorn/", "fastapi/", "starlette/", "pydantic/")


class StallMonitor:
    """How long the event loop goes without running a callback, and what it ran meanwhile.

    A thread posts a ping into the loop every `period_s` and, until the loop runs it, samples
    the main thread's stack (as often as the GIL lets it: every switch interval, 5 ms). A ping
    that waited longer than `threshold_ms` is a stall: every open stream waited with it. The
    samples say what held the loop; a stall with none was the process not running at all
    (another process on the core) or the GIL held by another thread.
    """

    def __init__(self, loop: Any, threshold_ms: float = 10.0, period_s: float = 0.002) -> None:
        import threading

        self.loop = loop
        self.threshold_ms = threshold_ms
        self.period_s = period_s
        self.main_ident = threading.main_thread().ident
        self.lags: list[float] = []
        self.stalls: list[tuple[float, list[str], int]] = []  # lag ms, samples, collections
        self.gc_runs = 0
        self.gc_log: list[tuple[int, float]] = []  # generation, ms
        self._gc_started = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stall-monitor", daemon=True)
        gc.callbacks.append(self._on_gc)
        self._thread.start()

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self.gc_runs += 1
            self._gc_started = time.perf_counter()
        else:
            ms = (time.perf_counter() - self._gc_started) * 1e3
            self.gc_log.append((info["generation"], ms))

    def _run(self) -> None:
        import threading

        while not self._stop.is_set():
            done = threading.Event()
            sent = time.perf_counter()
            gc_before = self.gc_runs
            self.loop.call_soon_threadsafe(done.set)
            samples: list[str] = []
            while not done.wait(0.001):
                frame = sys._current_frames().get(self.main_ident)
                if frame is not None:
                    samples.append(_where(frame))
            lag = (time.perf_counter() - sent) * 1e3
            self.lags.append(lag)
            if lag > self.threshold_ms:
                self.stalls.append((lag, samples, self.gc_runs - gc_before))
            time.sleep(self.period_s)

    def take(self) -> dict[str, Any]:
        out = {"lags": self.lags, "stalls": self.stalls, "gc": self.gc_log}
        self.lags, self.stalls, self.gc_log = [], [], []
        return out


def _where(frame: Any) -> str:
    """The innermost few frames of ours or a library's, innermost first."""
    names: list[str] = []
    while frame is not None and len(names) < 4:
        name = _short(frame.f_code.co_filename)
        if "stall" not in frame.f_code.co_name:
            names.append(f"{name}:{frame.f_lineno}({frame.f_code.co_name})")
        frame = frame.f_back
    return " < ".join(names)


def serve(port: int, data: str, out: Path, gc_mode: bool, stalls: bool = False) -> None:
    """The server side: `tokenrelay serve`, with SIGUSR1/SIGUSR2 taking the measurements."""
    if stalls:
        from tokenrelay.server.serve import DrainingServer

        monitor: list[StallMonitor] = []
        startup = DrainingServer.startup

        async def watched(self: Any, sockets: Any = None) -> None:
            import asyncio

            monitor.append(StallMonitor(asyncio.get_running_loop()))
            await startup(self, sockets)

        DrainingServer.startup = watched  # type: ignore[method-assign]

        def dump_stalls(*_: Any) -> None:
            (out / "stalls.json").write_text(json.dumps(monitor[0].take()))

        signal.signal(signal.SIGUSR1, dump_stalls)
    elif gc_mode:
        pauses: list[tuple[int, float]] = []
        started = [0.0]

        def on_gc(phase: str, info: dict[str, Any]) -> None:
            if phase == "start":
                started[0] = time.perf_counter()
            else:
                pauses.append((info["generation"], (time.perf_counter() - started[0]) * 1e3))

        def dump(*_: Any) -> None:
            (out / "gc.json").write_text(json.dumps(pauses))
            pauses.clear()

        gc.callbacks.append(on_gc)
        signal.signal(signal.SIGUSR1, dump)
    else:
        tracemalloc.start(12)

        def snap(name: str) -> None:
            gc.collect()
            tracemalloc.take_snapshot().dump(str(out / f"{name}.snap"))
            (out / f"{name}.done").write_text("ok")

        signal.signal(signal.SIGUSR1, lambda *_: snap("before"))
        signal.signal(signal.SIGUSR2, lambda *_: snap("after"))
    from tokenrelay.cli import app

    sys.argv = ["tokenrelay", "serve", "--provider", "scripted", "--port", str(port)]
    sys.argv += ["--data-dir", data]
    app()


def _short(filename: str) -> str:
    for marker in ("/site-packages/", "/src/", "/lib/python3"):
        if marker in filename:
            filename = filename.split(marker, 1)[1]
    return filename


def report(out: Path, streams: int, rows: int) -> None:
    before = tracemalloc.Snapshot.load(str(out / "before.snap"))
    after = tracemalloc.Snapshot.load(str(out / "after.snap"))
    owners: collections.Counter[str] = collections.Counter()
    sites: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for stat in after.compare_to(before, "traceback"):
        frames = list(stat.traceback)[::-1]  # innermost first
        site = f"{_short(frames[0].filename)}:{frames[0].lineno}"
        owner = next(
            (
                f"{_short(f.filename)}:{f.lineno}"
                for prefixes in (OURS, LIBRARIES)
                for f in frames
                if _short(f.filename).startswith(prefixes)
                and not _short(f.filename).startswith(ENTRY)
            ),
            site,
        )
        owners[owner] += stat.size_diff
        sites[owner][site] += stat.size_diff
    total = sum(owners.values())
    print(f"tracemalloc: {total / streams:,.0f} bytes per open idle stream ({streams} streams)")
    for owner, size in owners.most_common(rows):
        top = ", ".join(f"{s} {n / streams:.0f}" for s, n in sites[owner].most_common(3))
        print(f"{size / streams:8,.0f}  {owner}   <- {top}")


def report_stalls(data: dict[str, Any], res: Any, streams: int) -> None:
    gaps = sorted(res.gaps)
    p99 = gaps[int(len(gaps) * 0.99)] * 1e3 if gaps else float("nan")
    lags = sorted(data["lags"])
    print(
        f"{streams} paced streams: p99 gap {p99:.1f} ms; loop lag p50 {lags[len(lags) // 2]:.2f}"
        f" p99 {lags[int(len(lags) * 0.99)]:.2f} max {lags[-1]:.1f} ms over {len(lags)} pings"
    )
    stalls = data["stalls"]
    print(f"stalls over 10 ms: {len(stalls)}, their lag in all {sum(s[0] for s in stalls):.0f} ms")
    where: collections.Counter[str] = collections.Counter()
    for rank, (lag, samples, gcs) in enumerate(sorted(stalls, reverse=True)):
        where.update(samples)
        if rank >= 30:
            continue
        top = collections.Counter(samples).most_common(1)
        print(
            f"  {lag:6.1f} ms  {len(samples)} samples  {gcs} gc  "
            f"{top[0][0] if top else '(no sample: not running, or GIL elsewhere)'}"
        )
    for gen in sorted({g for g, _ in data["gc"]}):
        ms = [m for g, m in data["gc"] if g == gen]
        print(
            f"generation {gen}: {len(ms)} collections, longest {max(ms):.2f} ms, "
            f"all {sum(ms):.1f} ms"
        )
    print("samples taken during stalls, by place:")
    for place, n in where.most_common(25):
        print(f"  {n:4d}  {place}")


def _wait(path: Path, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the server did not write {path}")
        time.sleep(0.2)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--streams", type=int, default=1000)
    p.add_argument("--rows", type=int, default=30)
    p.add_argument("--gc", action="store_true", help="time collections under paced load")
    p.add_argument("--stalls", action="store_true", help="time event-loop stalls under paced load")
    p.add_argument("--serve", nargs=3, metavar=("PORT", "DATA", "OUT"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        port, data, out = args.serve
        serve(int(port), data, Path(out), args.gc, args.stalls)
        return

    import subprocess

    out = Path(tempfile.mkdtemp(prefix="relay-memory-"))
    port = free_port()
    argv = [sys.executable, "-m", "bench.relay.memory", "--serve", str(port), str(out), str(out)]
    log = (out / "server.log").open("wb")
    proc = subprocess.Popen(
        argv + (["--gc"] if args.gc else []) + (["--stalls"] if args.stalls else []),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _ready(port)
        run_fixed(FixedSpec("127.0.0.1", port, STREAM_PATH, body(20, 1), 50, ramp_s=0.2))
        if args.stalls:
            os.kill(proc.pid, signal.SIGUSR1)  # forget the warm-up
            _wait(out / "stalls.json")
            (out / "stalls.json").unlink()
            res = run_fixed(
                FixedSpec("127.0.0.1", port, STREAM_PATH, body(100, 20), args.streams, ramp_s=1.0)
            )
            os.kill(proc.pid, signal.SIGUSR1)
            _wait(out / "stalls.json")
            time.sleep(0.3)
            report_stalls(json.loads((out / "stalls.json").read_text()), res, args.streams)
            return
        if args.gc:
            os.kill(proc.pid, signal.SIGUSR1)  # forget the warm-up's collections
            time.sleep(0.5)
            res = run_fixed(
                FixedSpec("127.0.0.1", port, STREAM_PATH, body(100, 20), args.streams, ramp_s=1.0)
            )
            os.kill(proc.pid, signal.SIGUSR1)
            _wait(out / "gc.json")
            time.sleep(0.5)
            pauses = json.loads((out / "gc.json").read_text())
            gaps = sorted(res.gaps)
            p99 = gaps[int(len(gaps) * 0.99)] * 1e3 if gaps else float("nan")
            print(f"{args.streams} paced streams: p99 gap {p99:.1f} ms")
            for gen in sorted({g for g, _ in pauses}):
                ms = [m for g, m in pauses if g == gen]
                print(
                    f"generation {gen}: {len(ms)} collections, longest {max(ms):.2f} ms, "
                    f"all {sum(ms):.1f} ms"
                )
            return
        idle = FixedSpec(
            "127.0.0.1", port, STREAM_PATH, body(100, 0, stall_after=0), args.streams, 1.0, 30
        )
        # once without measuring: one-time growth (pools, caches) is not per stream
        hold_open(dataclasses.replace(idle, streams=100), 1.0, lambda: None)
        time.sleep(1.0)
        os.kill(proc.pid, signal.SIGUSR1)
        _wait(out / "before.done")

        def measure() -> None:
            os.kill(proc.pid, signal.SIGUSR2)
            _wait(out / "after.done")

        hold_open(idle, 2.0, measure)
        report(out, args.streams, args.rows)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
        log.close()


def _ready(port: int, timeout_s: float = 120.0) -> None:
    import socket

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"the server did not listen on {port}")


if __name__ == "__main__":
    main()
