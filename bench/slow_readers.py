"""The memory that stalled readers hold: clients that start a 1 MB stream and never read.

    PYTHONPATH=src:. .venv/bin/python -m bench.slow_readers                 # 40 readers
    PYTHONPATH=src:. .venv/bin/python -m bench.slow_readers --readers 40 --write-timeout 10

Starts `tokenrelay serve` (scripted provider, a fresh data dir), then opens `--readers` raw
sockets with a small receive buffer (`SO_RCVBUF`), each sending one `POST /api/chat/stream`
whose scripted reply is `--reply-bytes` of text in `--tokens` tokens, and never reads a byte.
It prints the server's RSS (from /proc) before, while the readers are stalled, at its peak
until every reader is closed by the server (at most `--after` seconds past `--write-timeout`,
TOKENRELAY_WRITE_TIMEOUT_S), and once the streams have expired from the log (`--ttl`). The
same again for `--waves` rounds: RSS rarely shrinks (the allocator keeps freed pages), so
what was released shows as a next wave that fits in the memory of the last. The numbers of
docs/benchmarks.md ("Stalled readers") and docs/deployment.md ("Slow readers") come from
this script; `--no-timeout-setting` runs it against a build without the setting.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def stalled_reader(
    port: int, body: bytes, rcvbuf: int, *, resume: str | None = None
) -> socket.socket:
    """A client that sends its request and never reads (the kernel's window stays small):
    a new stream with `body`, or the replay of stream `resume` from its start."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # before connect: the window
    sock.connect(("127.0.0.1", port))
    if resume is not None:
        sock.sendall(
            f"GET /api/streams/{resume} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
        )
        return sock
    head = (
        f"POST /api/chat/stream HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    sock.sendall(head + body)
    return sock


def finished_stream(port: int, body: bytes) -> str:
    """Run one stream, read whole; its id."""
    with httpx.stream(
        "POST", f"http://127.0.0.1:{port}/api/chat/stream", content=body, timeout=60
    ) as response:
        lines = response.iter_lines()
        first = next(lines)  # "id: <stream>:1"
        for _ in lines:
            pass
    return first.split(" ", 1)[1].rsplit(":", 1)[0]


def open_sockets(pid: int) -> int:
    """The server's open sockets (its listener and one per connection): the clients' sockets
    cannot tell a close from the server, whose end of stream waits behind unread bytes."""
    fds = Path(f"/proc/{pid}/fd")
    count = 0
    for fd in fds.iterdir():
        try:
            count += os.readlink(fd).startswith("socket:")
        except OSError:
            continue
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readers", type=int, default=40)
    parser.add_argument("--reply-bytes", type=int, default=1_000_000)
    parser.add_argument("--tokens", type=int, default=20_000)
    parser.add_argument("--rcvbuf", type=int, default=4096)
    parser.add_argument("--write-timeout", type=float, default=10.0)
    parser.add_argument("--stalled-for", type=float, default=5.0, help="seconds before 'stalled'")
    parser.add_argument("--after", type=float, default=20.0, help="at most, past the timeout")
    parser.add_argument("--waves", type=int, default=2, help="rounds of stalled readers")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="the readers replay finished streams (GET /api/streams/{id}) instead of"
        " starting them: what the readers alone hold, without generation's memory",
    )
    parser.add_argument(
        "--ttl", type=float, default=5.0, help="stream_ttl_s: the log's copy goes after this"
    )
    parser.add_argument("--no-timeout-setting", action="store_true", help="for the old build")
    args = parser.parse_args()

    port = free_port()
    data = tempfile.mkdtemp(prefix="slowreaders-")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENRELAY_")}
    env.update(
        TOKENRELAY_PROVIDER="scripted",
        TOKENRELAY_DATA_DIR=data,
        TOKENRELAY_LOG_LEVEL="warning",
        TOKENRELAY_MAX_TOKENS="32768",  # the scripted reply is cut at max_tokens pieces
        TOKENRELAY_STREAM_TTL_S=str(600 if args.resume else args.ttl),
        TOKENRELAY_DISCONNECT_GRACE_S="60",
        TOKENRELAY_MAX_BODY_BYTES=str(args.reply_bytes + 100_000),
    )
    if not args.no_timeout_setting:
        env["TOKENRELAY_WRITE_TIMEOUT_S"] = str(args.write_timeout)
    server = subprocess.Popen(
        [sys.executable, "-m", "tokenrelay.cli", "serve", "--port", str(port)], env=env
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("the server did not start")
            time.sleep(0.2)
        reply = ("word " * (args.reply_bytes // 5 + 1))[: args.reply_bytes]
        body = json.dumps(
            {"message": "m", "options": {"scripted": {"reply": reply, "tokens": args.tokens}}}
        ).encode()
        # one warm-up stream read whole, so that "before" includes what the first stream loads
        httpx.post(f"http://127.0.0.1:{port}/api/chat/stream", content=body, timeout=60)
        time.sleep(1)
        ids: list[str | None] = [None] * args.readers
        if args.resume:  # the streams to replay, finished and kept by the log
            ids = [finished_stream(port, body) for _ in range(args.readers)]
            time.sleep(1)
        before = rss_mb(server.pid)
        base_sockets = open_sockets(server.pid)
        print(f"RSS before: {before:.0f} MB", flush=True)
        for wave in range(1, args.waves + 1):
            started = time.monotonic()
            socks = [stalled_reader(port, body, args.rcvbuf, resume=i) for i in ids]
            time.sleep(args.stalled_for)
            stalled = rss_mb(server.pid)
            closed = base_sockets + args.readers - open_sockets(server.pid)
            print(
                f"wave {wave}: RSS with {args.readers} stalled readers after"
                f" {args.stalled_for:g} s: {stalled:.0f} MB, closed by the server: {closed}",
                flush=True,
            )
            until = started + args.write_timeout + args.after
            peak = stalled
            while time.monotonic() < until:
                time.sleep(1)
                closed = base_sockets + args.readers - open_sockets(server.pid)
                peak = max(peak, rss_mb(server.pid))
                if closed == args.readers:
                    break
            # the memory log forgets expired streams when a stream is created: one small one
            wait = 0.0 if args.resume else args.ttl
            time.sleep(wait)
            small = {"message": "m", "options": {"scripted": {"tokens": 1}}}
            httpx.post(f"http://127.0.0.1:{port}/api/chat/stream", json=small, timeout=60)
            time.sleep(1)
            print(
                f"wave {wave}: peak RSS {peak:.0f} MB (+{(peak - before) / args.readers:.1f} MB"
                f" per reader over 'before'); {closed}/{args.readers} closed by the server"
                f" {time.monotonic() - started - wait - 1:.0f} s after the wave began;"
                f" RSS {'then' if args.resume else 'once the streams expired'}:"
                f" {rss_mb(server.pid):.0f} MB",
                flush=True,
            )
            for sock in socks:
                sock.close()
            time.sleep(2)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


if __name__ == "__main__":
    main()
