"""Profile one server under one load with py-spy and say where its CPU time goes.

    .venv/bin/pip install py-spy
    .venv/bin/python -m bench.relay.profile --server tokenrelay --load paced --streams 300
    .venv/bin/python -m bench.relay.profile --server naive --load unpaced

py-spy samples the server process (all threads, not idle ones) while the load runs, writes
collapsed stacks to ``--out`` (``bench/results/profile-<server>-<load>.txt`` by default, not
committed) and prints the share of samples by package (inclusive: a sample counts for every
package on its stack) and the functions with the most self time.
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench.relay.loadgen import ClosedSpec, FixedSpec, run_closed, run_fixed
from bench.relay.servers import REPO, SERVER_NAMES, STREAM_PATH, VENV_BIN, make_server

# package buckets, matched against "function (file:line)" frames, first match wins per frame
BUCKETS: list[tuple[str, str]] = [
    ("sse_starlette", r"[(/]sse_starlette/"),
    ("starlette", r"[(/]starlette/"),
    ("fastapi", r"[(/]fastapi/"),
    ("uvicorn", r"[(/]uvicorn/"),
    ("h11", r"[(/]h11/"),
    ("pydantic", r"[(/]pydantic(_core)?/"),
    ("anyio", r"[(/]anyio/"),
    ("logging", r"[(/]logging/"),
    ("prometheus_client", r"[(/]prometheus_client/"),
    ("sqlite", r"[(/](aiosqlite|sqlite3)/"),
    ("json", r"[(/]json/|orjson"),
    ("asyncio", r"[(/]asyncio/"),
    ("tokenrelay.server", r"[(/]tokenrelay/server/"),
    ("tokenrelay.streams", r"[(/]tokenrelay/streams/"),
    ("tokenrelay.pipelines", r"[(/]tokenrelay/pipelines/"),
    ("tokenrelay.sessions", r"[(/]tokenrelay/sessions/"),
    ("tokenrelay.providers", r"[(/]tokenrelay/providers/"),
    ("tokenrelay.events", r"[(/]tokenrelay/events\.py"),
    ("tokenrelay.metrics", r"[(/]tokenrelay/metrics\.py"),
    ("tokenrelay (other)", r"[(/]tokenrelay/(?!cli\.py)"),
]
_COMPILED = [(name, re.compile(rx)) for name, rx in BUCKETS]


def summarize(collapsed: str, top: int = 25) -> str:
    total = 0
    inclusive: collections.Counter[str] = collections.Counter()
    self_time: collections.Counter[str] = collections.Counter()
    for line in collapsed.splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        count = int(count_s)
        total += count
        frames = stack.split(";")
        seen = set()
        for frame in frames:
            for name, rx in _COMPILED:
                if rx.search(frame):
                    seen.add(name)
                    break
        for name in seen:
            inclusive[name] += count
        leaf = frames[-1]
        self_time[re.sub(r":\d+\)$", ")", leaf)] += count
    if not total:
        return "no samples"
    out = [f"{total} samples", "", "inclusive share by package:"]
    for name, c in inclusive.most_common():
        out.append(f"  {100 * c / total:5.1f}%  {name}")
    out += ["", f"top {top} self time:"]
    for frame, c in self_time.most_common(top):
        out.append(f"  {100 * c / total:5.1f}%  {frame}")
    return "\n".join(out)


def body(tokens: int, delay_ms: float) -> dict[str, Any]:
    return {"message": "bench", "options": {"scripted": {"tokens": tokens, "delay_ms": delay_ms}}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.relay.profile", description=__doc__)
    p.add_argument("--server", choices=SERVER_NAMES, default="tokenrelay")
    p.add_argument("--load", choices=["paced", "unpaced"], default="paced")
    p.add_argument("--streams", type=int, default=300, help="paced: streams; unpaced: lanes")
    p.add_argument("--seconds", type=float, default=8.0, help="sampling time")
    p.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    p.add_argument("--out", type=Path)
    p.add_argument("--env", nargs="*", default=[], metavar="NAME=VALUE")
    p.add_argument("--native", action="store_true", help="also sample C frames (e.g. the GC)")
    args = p.parse_args(argv)
    pyspy = shutil.which("py-spy") or str(VENV_BIN / "py-spy")
    if not Path(pyspy).exists():
        print("py-spy is missing: .venv/bin/pip install py-spy", file=sys.stderr)
        return 2
    out = args.out or REPO / "bench" / "results" / f"profile-{args.server}-{args.load}.txt"
    env = dict(kv.split("=", 1) for kv in args.env)
    server = make_server(args.server, env)
    server.start()
    try:
        server.wait_port(90)
        run_fixed(FixedSpec("127.0.0.1", server.port, STREAM_PATH, body(20, 1), 50, 0.2))
        spy = subprocess.Popen(
            [
                pyspy,
                "record",
                "--pid",
                str(server.pid),
                "--duration",
                str(int(args.seconds)),
                "--rate",
                str(args.rate),
                "--format",
                "raw",
                "--output",
                str(out),
                "--threads",
                "--nonblocking",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        time.sleep(0.5)
        stop = time.monotonic() + args.seconds
        done = threading.Event()

        def load() -> None:
            while time.monotonic() < stop and not done.is_set():
                if args.load == "paced":
                    spec = FixedSpec(
                        "127.0.0.1",
                        server.port,
                        STREAM_PATH,
                        body(100, 20),
                        args.streams,
                        ramp_s=1.0,
                    )
                    run_fixed(spec)
                else:
                    run_closed(
                        ClosedSpec(
                            "127.0.0.1",
                            server.port,
                            STREAM_PATH,
                            body(100, 0),
                            args.streams,
                            duration_s=max(0.5, stop - time.monotonic()),
                        )
                    )

        t = threading.Thread(target=load, daemon=True)
        t.start()
        _, err = spy.communicate(timeout=args.seconds + 60)
        done.set()
        t.join(timeout=120)
        if spy.returncode != 0:
            print(err.decode(errors="replace"), file=sys.stderr)
            return 1
    finally:
        server.stop()
    print(f"{args.server} under {args.load} load ({args.streams}); collapsed stacks: {out}\n")
    print(summarize(out.read_text()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
