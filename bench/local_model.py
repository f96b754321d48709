"""Local model benchmark: the `local` provider vs llama-cpp-python called directly.

    .venv/bin/python bench/local_model.py                 # provider + direct + server
    .venv/bin/python bench/local_model.py --no-server     # without `tokenrelay serve`
    .venv/bin/python bench/local_model.py --write         # also update docs/benchmarks.md

Scenarios (greedy decoding, same prompt messages everywhere: the server's system prompt plus
one user question, rendered with the model's chat template):

1. single stream, tokens/s = completion tokens / wall time of the request (prefill included):
   a. `Llama.create_completion(stream=True)` on the same prompt text (prompt cache reset before
      each run, so it prefills like the others),
   b. `LocalProvider.stream` in this process,
   c. `POST /api/chat/stream` of `tokenrelay serve --provider local` (SSE, one HTTP client).
   Runs are interleaved (a, b, c, a, b, c, ...) and the median is reported.
2. 4 concurrent users, all starting together, 4 different questions, several rounds:
   time to first token p50/p99 over all users and rounds, and aggregate tokens/s =
   all completion tokens of a round / the round's wall time (median over rounds),
   compared with the single-stream tokens/s of the same path.

3. decode step cost by batch size: one step for 1, 2, 4 and 8 sequences (one token each),
   interleaved, median ms per step and the tokens/s gain over one sequence — the ceiling of
   what batching can give on this CPU.

Threads: `--threads N` (default 1) for generation and batch steps on every path (direct
`Llama(n_threads=N, n_threads_batch=N)`, the provider, and the server through
TOKENRELAY_LOCAL_N_THREADS); flash attention off everywhere (llama-cpp-python's default).
The section between the `<!-- local-model:begin -->` and `<!-- local-model:end -->` markers
is rewritten.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tokenrelay.config import Settings
from tokenrelay.providers.base import ChatMessage, Finish, ProviderRequest, TextDelta, Usage
from tokenrelay.providers.local import LocalProvider
from tokenrelay.providers.model_files import bundled_model_path

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "benchmarks.md"
BEGIN, END = "<!-- local-model:begin -->", "<!-- local-model:end -->"
SINGLE_QUESTION = "Write a long story about a brave knight and a dragon."
USER_QUESTIONS = [
    "Write a long story about a brave knight and a dragon.",
    "Explain how rain forms, step by step, in detail.",
    "Describe a day in the life of a city bus driver.",
    "List many tips for learning to cook at home and explain each.",
]


@dataclass
class Run:
    tokens: int
    seconds: float
    ttft: float

    @property
    def tps(self) -> float:
        return self.tokens / self.seconds


@dataclass
class Results:
    single: dict[str, list[float]] = field(default_factory=dict)
    concurrent: dict[str, dict[str, float]] = field(default_factory=dict)
    steps: dict[int, float] = field(default_factory=dict)


def messages_for(question: str) -> tuple[ChatMessage, ...]:
    return (ChatMessage("system", Settings().system_prompt), ChatMessage("user", question))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q * (len(ordered) - 1))))
    return ordered[k]


# -- a. llama-cpp-python directly


class Direct:
    def __init__(self, threads: int) -> None:
        from llama_cpp import Llama

        self.llm: Any = Llama(
            model_path=str(bundled_model_path()),
            n_ctx=2048,
            n_threads=threads,
            n_threads_batch=threads,
            verbose=False,
        )

    def run(self, prompt: str, max_tokens: int) -> Run:
        self.llm.reset()  # no prompt-cache reuse between runs
        start = time.perf_counter()
        ttft = 0.0
        tokens = 0
        for _chunk in self.llm.create_completion(
            prompt, max_tokens=max_tokens, temperature=0.0, stream=True
        ):
            if tokens == 0:
                ttft = time.perf_counter() - start
            tokens += 1
        return Run(tokens, time.perf_counter() - start, ttft)


# -- b. the provider in this process


async def provider_run(provider: LocalProvider, question: str, max_tokens: int) -> Run:
    request = ProviderRequest(messages=messages_for(question), temperature=0, max_tokens=max_tokens)
    start = time.perf_counter()
    ttft = 0.0
    tokens = 0
    async for event in provider.stream(request):
        if isinstance(event, TextDelta) and ttft == 0.0:
            ttft = time.perf_counter() - start
        elif isinstance(event, Usage):
            tokens = event.completion_tokens
        elif isinstance(event, Finish):
            break
    return Run(tokens, time.perf_counter() - start, ttft)


# -- c. through `tokenrelay serve --provider local`


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    def __init__(self, threads: int) -> None:
        self.port = free_port()
        self.data_dir = tempfile.mkdtemp(prefix="tokenrelay-bench-")
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ)
        env["TOKENRELAY_LOG_LEVEL"] = "warning"
        env["TOKENRELAY_LOCAL_N_THREADS"] = str(threads)
        self.proc = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "tokenrelay"),
                "serve",
                "--provider",
                "local",
                "--port",
                str(self.port),
                "--data-dir",
                self.data_dir,
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    async def wait_ready(self, client: httpx.AsyncClient) -> None:
        for _ in range(600):
            if self.proc.poll() is not None:
                raise RuntimeError("tokenrelay serve exited")
            try:
                if (await client.get(f"{self.url}/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
        raise RuntimeError("tokenrelay serve did not start")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


async def server_run(client: httpx.AsyncClient, url: str, question: str, max_tokens: int) -> Run:
    body = {"message": question, "options": {"temperature": 0, "max_tokens": max_tokens}}
    start = time.perf_counter()
    ttft = 0.0
    tokens = 0
    event = ""
    async with client.stream("POST", f"{url}/api/chat/stream", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                if event == "token" and ttft == 0.0:
                    ttft = time.perf_counter() - start
                elif event == "done":
                    tokens = int(json.loads(line[5:])["usage"]["completion_tokens"])
                elif event == "error":
                    raise RuntimeError(line)
    return Run(tokens, time.perf_counter() - start, ttft)


# -- scenario 3: the raw cost of one decode step by batch size


def step_costs(threads: int, rounds: int = 25) -> dict[int, float]:
    from tokenrelay.providers.llama_runtime import LlamaRuntime, RuntimeConfig

    config = RuntimeConfig(
        model_path=bundled_model_path(),
        n_ctx_per_seq=512,
        n_seq_max=8,
        n_threads=threads,
        n_threads_batch=threads,
        flash_attn=False,
    )
    runtime = LlamaRuntime.load(config)
    batch = runtime.new_batch(512)
    positions = [0] * 8
    times: dict[int, list[float]] = {1: [], 2: [], 4: [], 8: []}
    try:
        for seq in range(8):  # a 40-token context for every sequence
            batch.clear()
            for i in range(40):
                batch.add(100 + i, i, seq, i == 39)
            runtime.decode(batch)
            positions[seq] = 40
        for r in range(rounds):
            for n in times:
                batch.clear()
                for seq in range(n):
                    batch.add(200 + r, positions[seq], seq, True)
                    positions[seq] += 1
                start = time.perf_counter()
                if runtime.decode(batch) != 0:
                    raise RuntimeError("decode failed")
                times[n].append(time.perf_counter() - start)
    finally:
        batch.close()
        runtime.close()
    return {n: statistics.median(v) for n, v in times.items()}


# -- scenarios


async def concurrent_rounds(
    one: Callable[[str], Awaitable[Run]], rounds: int, single_tps: float
) -> dict[str, float]:
    ttfts: list[float] = []
    aggregate: list[float] = []
    for _ in range(rounds):
        start = time.perf_counter()
        runs = await asyncio.gather(*(one(q) for q in USER_QUESTIONS))
        wall = time.perf_counter() - start
        ttfts.extend(r.ttft for r in runs)
        aggregate.append(sum(r.tokens for r in runs) / wall)
    agg = statistics.median(aggregate)
    return {
        "ttft_p50": percentile(ttfts, 0.5),
        "ttft_p99": percentile(ttfts, 0.99),
        "aggregate_tps": agg,
        "single_tps": single_tps,
        "speedup": agg / single_tps,
    }


async def bench(args: argparse.Namespace) -> Results:
    results = Results()
    provider = LocalProvider(n_threads=args.threads, max_tokens=args.max_tokens)
    await asyncio.to_thread(provider.load)
    direct = Direct(args.threads)
    prompt = provider.format_prompt(messages_for(SINGLE_QUESTION))
    server: ServerProcess | None = None
    client = httpx.AsyncClient(timeout=120)
    if args.server:
        server = ServerProcess(args.threads)
        await server.wait_ready(client)
        await server_run(client, server.url, "hello", 4)  # loads the model
    try:
        await provider_run(provider, "hello", 4)
        direct.run(prompt, 4)
        single: dict[str, list[float]] = {"direct": [], "provider": [], "server": []}
        for _ in range(args.rounds):
            single["direct"].append(direct.run(prompt, args.max_tokens).tps)
            single["provider"].append(
                (await provider_run(provider, SINGLE_QUESTION, args.max_tokens)).tps
            )
            if server is not None:
                run = await server_run(client, server.url, SINGLE_QUESTION, args.max_tokens)
                single["server"].append(run.tps)
        results.single = {k: v for k, v in single.items() if v}
        del direct

        async def via_provider(q: str) -> Run:
            return await provider_run(provider, q, args.max_tokens)

        results.concurrent["provider"] = await concurrent_rounds(
            via_provider, args.rounds, statistics.median(single["provider"])
        )
        if server is not None:
            srv = server

            async def via_server(q: str) -> Run:
                return await server_run(client, srv.url, q, args.max_tokens)

            results.concurrent["server"] = await concurrent_rounds(
                via_server, args.rounds, statistics.median(single["server"])
            )
    finally:
        await client.aclose()
        await provider.aclose()
        if server is not None:
            server.stop()
    results.steps = await asyncio.to_thread(step_costs, args.threads)
    return results


# -- report


def render(results: Results, args: argparse.Namespace, command: str) -> str:
    med = {k: statistics.median(v) for k, v in results.single.items()}
    lines = [
        "## Local model (SmolLM2-135M-Instruct Q4_1, llama.cpp)",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores (shared, other work running), "
        f"Python {platform.python_version()}, llama-cpp-python "
        f"{_llama_version()}; {args.threads} thread(s) for generation and batch steps, "
        f"flash attention off; n_seq_max 4; greedy, max_tokens {args.max_tokens}, "
        f"{args.rounds} interleaved rounds, medians.",
        "",
        "Single stream (completion tokens / request wall time, prefill included):",
        "",
        "| path | tokens/s | vs direct |",
        "|---|---:|---:|",
    ]
    for key, label in [
        ("direct", "llama-cpp-python `Llama.create_completion(stream=True)`"),
        ("provider", "`LocalProvider.stream` (engine thread, batching on)"),
        ("server", "`POST /api/chat/stream`, `tokenrelay serve --provider local`"),
    ]:
        if key in med:
            lines.append(f"| {label} | {med[key]:.1f} | {med[key] / med['direct']:.2f}x |")
    lines += [
        "",
        f"{len(USER_QUESTIONS)} concurrent users (different questions, started together):",
        "",
        "| path | TTFT p50 | TTFT p99 | aggregate tokens/s | single stream | ratio |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for key, row in results.concurrent.items():
        lines.append(
            f"| {key} | {row['ttft_p50']:.3f} s | {row['ttft_p99']:.3f} s | "
            f"{row['aggregate_tps']:.1f} | {row['single_tps']:.1f} | {row['speedup']:.2f}x |"
        )
    one = results.steps.get(1, 0.0)
    lines += [
        "",
        "Decode step cost by batch size (one token per sequence, interleaved, median):",
        "",
        "| sequences | ms per step | tokens/s | gain over 1 |",
        "|---:|---:|---:|---:|",
    ]
    for n, seconds in results.steps.items():
        lines.append(
            f"| {n} | {seconds * 1000:.1f} | {n / seconds:.0f} | {one * n / seconds:.2f}x |"
        )
    lines += [
        "",
        "Targets: TTFT p99 <= 2 s and aggregate >= 1.5x single stream with 4 users; "
        "single stream through the server >= 0.95x llama-cpp-python directly. "
        "The machine is shared, so numbers move run to run by 10-20 %.",
    ]
    return "\n".join(lines)


def _llama_version() -> str:
    import llama_cpp

    return str(llama_cpp.__version__)


def write_section(section: str) -> None:
    DOC.parent.mkdir(parents=True, exist_ok=True)
    text = DOC.read_text(encoding="utf-8") if DOC.exists() else "# Benchmarks\n"
    block = f"{BEGIN}\n{section}\n{END}"
    if BEGIN in text and END in text:
        head, _, rest = text.partition(BEGIN)
        _, _, tail = rest.partition(END)
        text = head + block + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    DOC.write_text(text, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-server", dest="server", action="store_false")
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    command = ".venv/bin/python bench/local_model.py " + " ".join(sys.argv[1:])
    results = asyncio.run(bench(args))
    section = render(results, args, command.strip())
    print(section)
    raw = {"single": results.single, "concurrent": results.concurrent, "steps": results.steps}
    print(json.dumps(raw, indent=1))
    if args.write:
        write_section(section)


if __name__ == "__main__":
    main()
