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
ENTRY = ("tokenrelay/cli.py", "tokenrelay/server/serve.py")  # on every stack: not an owner
LIBRARIES = ("uvicorn/", "fastapi/", "starlette/", "pydantic/")


def serve(port: int, data: str, out: Path, gc_mode: bool) -> None:
    """The server side: `tokenrelay serve`, with SIGUSR1/SIGUSR2 taking the measurements."""
    if gc_mode:
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
    p.add_argument("--serve", nargs=3, metavar=("PORT", "DATA", "OUT"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        port, data, out = args.serve
        serve(int(port), data, Path(out), args.gc)
        return

    import subprocess

    out = Path(tempfile.mkdtemp(prefix="relay-memory-"))
    port = free_port()
    argv = [sys.executable, "-m", "bench.relay.memory", "--serve", str(port), str(out), str(out)]
    log = (out / "server.log").open("wb")
    proc = subprocess.Popen(
        argv + (["--gc"] if args.gc else []), stdout=log, stderr=subprocess.STDOUT
    )
    try:
        _ready(port)
        run_fixed(FixedSpec("127.0.0.1", port, STREAM_PATH, body(20, 1), 50, ramp_s=0.2))
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
