"""The other wire formats against the native one, on one tokenrelay server: OpenAI's Chat
Completions chunks (`v1`), the OpenAI Responses API (`responses`) and the AI SDK's UI message
stream (`ui`).

    .venv/bin/python -m bench.relay.v1
    .venv/bin/python -m bench.relay.v1 --tokenrelay-env PYTHONPATH=/path/to/other/src  # A/B

Alternating rounds on the same server: unpaced (32 lanes of 100-token answers, token events
per second and server CPU per token) and paced (N streams of 100 tokens at 20 ms: p50/p99
gap and server CPU per token). Prints a markdown table. The load generator reads OpenAI's
chunks for `/v1` (`loadgen.use_frames`), whose role chunk counts as one more token.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, TypeVar

from bench.relay import loadgen
from bench.relay.loadgen import ClosedSpec, FixedSpec, LoadResult, run_closed, run_fixed
from bench.relay.servers import Server, make_server
from bench.relay.stats import pct

HOST = "127.0.0.1"
FRAMES = {
    "native": "native",
    "v1": "openai",
    "ui": "ui",
    "responses": "responses",
}  # endpoint → what the loadgen reads
Spec = TypeVar("Spec", ClosedSpec, FixedSpec)


def request(wire: str, tokens: int, delay_ms: float) -> tuple[str, dict[str, Any]]:
    scripted = {"tokens": tokens, "delay_ms": delay_ms}
    if wire == "native":
        return "/api/chat/stream", {"message": "bench", "options": {"scripted": scripted}}
    if wire == "responses":  # the OpenAI Responses API, streamed, not stored
        return "/v1/responses", {
            "model": "scripted",
            "stream": True,
            "store": False,
            "input": "bench",
            "tokenrelay": {"scripted": scripted},
        }
    if wire == "ui":  # the AI SDK's useChat request, a new chat each time
        message = {"id": "m1", "role": "user", "parts": [{"type": "text", "text": "bench"}]}
        ui = {"id": loadgen.UNIQUE, "messages": [message], "options": {"scripted": scripted}}
        return "/api/ui/chat", ui
    body = {
        "model": "scripted",
        "stream": True,
        "messages": [{"role": "user", "content": "bench"}],
        "tokenrelay": {"scripted": scripted},
    }
    return "/v1/chat/completions", body


def measured(
    server: Server, run: Callable[[Spec], LoadResult], spec: Spec
) -> tuple[LoadResult, float]:
    """The load's result, and the server's CPU per token it received."""
    before = server.sample()
    result = run(spec)
    cpu = server.sample().cpu_s - before.cpu_s
    tokens = sum(r.tokens for r in result.records)
    return result, cpu / max(1, tokens) * 1e6


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.relay.v1", description=__doc__)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--streams", type=int, default=500, help="paced streams")
    p.add_argument("--seconds", type=float, default=4.0, help="unpaced: seconds per round")
    p.add_argument("--tokenrelay-env", nargs="*", default=[], metavar="NAME=VALUE")
    p.add_argument("--wires", nargs="+", default=list(FRAMES), choices=list(FRAMES))
    args = p.parse_args(argv)
    env = dict(item.split("=", 1) for item in args.tokenrelay_env)
    server = make_server("tokenrelay", env)
    server.start()
    rows: list[str] = []
    try:
        server.wait_port(90)
        for rnd in range(args.rounds):
            for wire in args.wires:
                loadgen.use_frames(FRAMES[wire])
                path, body = request(wire, 100, 0)
                spec = ClosedSpec(HOST, server.port, path, body, 32, args.seconds, warmup_s=1)
                res, cpu = measured(server, run_closed, spec)
                errors = sum(1 for r in res.records if r.error)
                rate = res.window_tokens / res.wall_s
                rows.append(
                    f"| {rnd} | {wire} | unpaced, 32 lanes | {rate:,.0f} tokens/s | "
                    f"– | {cpu:.1f} | {errors} |"
                )
                path, body = request(wire, 100, 20)
                fixed = FixedSpec(HOST, server.port, path, body, args.streams, ramp_s=1.0)
                res, cpu = measured(server, run_fixed, fixed)
                gaps = sorted(res.gaps)
                errors = sum(1 for r in res.records if r.error)
                rows.append(
                    f"| {rnd} | {wire} | paced, {args.streams} streams | – | "
                    f"{pct(gaps, 50) * 1000:.1f} / {pct(gaps, 99) * 1000:.1f} | {cpu:.1f} | "
                    f"{errors} |"
                )
                print(rows[-2], rows[-1], sep="\n", flush=True)
    finally:
        server.stop()
    print(
        "\n| round | endpoint | load | throughput | gap p50 / p99 ms | server CPU µs/token "
        "| errors |\n|---:|---|---|---:|---:|---:|---:|"
    )
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
