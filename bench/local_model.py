"""Local model benchmark: the `local` provider vs llama-cpp-python called directly.

    .venv/bin/python bench/local_model.py                 # provider + direct + server
    .venv/bin/python bench/local_model.py --no-server     # without `tokenrelay serve`
    .venv/bin/python bench/local_model.py --write         # also update docs/benchmarks.md

Weights: `--weights` (default `auto`, the provider's default: the bundled Q4_1 file or its F16
conversion, whichever this machine runs faster, timed at the first start) picks the model
file, and every path below uses that same file, so the comparison is like with like; when
that is a conversion, the bundled Q4_1 file called directly is also timed, as a reference row.

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

Threads: `--threads N` (default 1) for one-token steps and `--threads-batch M` (default: the
server's own, every core) for larger ones, on every path (direct
`Llama(n_threads=N, n_threads_batch=M)`, the provider, and the server through
TOKENRELAY_LOCAL_N_THREADS / _N_THREADS_BATCH); flash attention off
everywhere (llama-cpp-python's default). The load average is printed before and after and
goes into the report. The section between the `<!-- local-model:begin -->` and
`<!-- local-model:end -->` markers is rewritten.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
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
from tokenrelay.providers.llama_runtime import convert_weights
from tokenrelay.providers.local import LocalProvider
from tokenrelay.providers.model_files import (
    bundled_model_path,
    prepare_weights,
)
from tokenrelay.providers.weights_auto import StepTimes, time_decode_steps

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
    steps: dict[str, StepTimes] = field(default_factory=dict)  # by weights
    quality: dict[str, tuple[float, float]] = field(default_factory=dict)  # by weights
    weights: str = ""  # the weights every path used (a key of steps)
    files: dict[str, Path] = field(default_factory=dict)  # by weights
    sizes: dict[str, int] = field(default_factory=dict)  # bytes, by weights
    model_file: Path | None = None
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)


def messages_for(question: str) -> tuple[ChatMessage, ...]:
    return (ChatMessage("system", Settings().system_prompt), ChatMessage("user", question))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q * (len(ordered) - 1))))
    return ordered[k]


# -- a. llama-cpp-python directly


class Direct:
    def __init__(self, model_file: Path, threads: int, threads_batch: int) -> None:
        from llama_cpp import Llama

        self.llm: Any = Llama(
            model_path=str(model_file),
            n_ctx=2048,
            n_threads=threads,
            n_threads_batch=threads_batch,
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
    def __init__(self, args: argparse.Namespace, data_dir: str) -> None:
        self.port = free_port()
        self.data_dir = data_dir
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ)
        env["TOKENRELAY_LOG_LEVEL"] = "warning"
        env["TOKENRELAY_LOCAL_N_THREADS"] = str(args.threads)
        env["TOKENRELAY_LOCAL_N_THREADS_BATCH"] = str(args.threads_batch)
        env["TOKENRELAY_LOCAL_WEIGHTS"] = args.weights
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


STEP_SIZES = (1, 2, 4, 8)
PREFILL_TOKENS = 128


def step_costs(
    files: dict[str, Path], threads: int, threads_batch: int, rounds: int = 25
) -> dict[str, StepTimes]:
    """Decode step cost by batch size for each model file, rounds interleaved across files:
    the provider's own timing of `local_weights=auto`, with more sizes and rounds."""
    return time_decode_steps(
        files,
        sizes=STEP_SIZES,
        threads=threads,
        threads_batch=threads_batch,
        rounds=rounds,
        prompt=PREFILL_TOKENS,
    )


def quality(files: dict[str, Path], reference: str) -> dict[str, tuple[float, float]]:
    """Per file: perplexity on the first 1,000 tokens of README.md and docs/protocol.md, and
    how often its most likely next token is the reference file's (teacher forcing)."""
    import numpy as np
    from llama_cpp import Llama

    text = (REPO / "README.md").read_text() + (REPO / "docs" / "protocol.md").read_text()
    logprobs: dict[str, Any] = {}
    tokens: list[int] = []
    for name, path in files.items():
        llm: Any = Llama(model_path=str(path), n_ctx=1024, logits_all=True, verbose=False)
        tokens = llm.tokenize(text.encode())[:1000]
        llm.eval(tokens)
        scores = np.array(llm.scores[: len(tokens)], dtype=np.float64)
        top = scores.max(axis=1, keepdims=True)
        logprobs[name] = scores - top - np.log(np.exp(scores - top).sum(axis=1, keepdims=True))
        llm.close()
    result: dict[str, tuple[float, float]] = {}
    nxt = np.array(tokens[1:])
    for name, lp in logprobs.items():
        nll = -lp[np.arange(len(nxt)), nxt].mean()
        agree = (lp.argmax(axis=1) == logprobs[reference].argmax(axis=1)).mean()
        result[name] = (float(np.exp(nll)), float(agree))
    return result


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
    data_dir = tempfile.mkdtemp(prefix="tokenrelay-bench-")
    provider = LocalProvider(
        n_threads=args.threads,
        n_threads_batch=args.threads_batch,
        max_tokens=args.max_tokens,
        weights=args.weights,
        cache_dir=Path(data_dir) / "models",
    )
    await asyncio.to_thread(provider.load)
    assert provider.model_file is not None
    results.model_file = provider.model_file
    direct = Direct(provider.model_file, args.threads, args.threads_batch)
    bundled = (
        Direct(bundled_model_path(), args.threads, args.threads_batch)
        if provider.model_file != bundled_model_path()
        else None
    )
    prompt = provider.format_prompt(messages_for(SINGLE_QUESTION))
    server: ServerProcess | None = None
    client = httpx.AsyncClient(timeout=120)
    if args.server:
        server = ServerProcess(args, data_dir)
        await server.wait_ready(client)
        await server_run(client, server.url, "hello", 4)  # loads the model
    try:
        await provider_run(provider, "hello", 4)
        direct.run(prompt, 4)
        single: dict[str, list[float]] = {"direct": [], "provider": [], "server": [], "bundled": []}
        for _ in range(args.rounds):
            if bundled is not None:
                single["bundled"].append(bundled.run(prompt, args.max_tokens).tps)
            single["direct"].append(direct.run(prompt, args.max_tokens).tps)
            single["provider"].append(
                (await provider_run(provider, SINGLE_QUESTION, args.max_tokens)).tps
            )
            if server is not None:
                run = await server_run(client, server.url, SINGLE_QUESTION, args.max_tokens)
                single["server"].append(run.tps)
        results.single = {k: v for k, v in single.items() if v}
        del direct, bundled

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
    assert provider.weights is not None
    results.weights = provider.weights  # what `auto` chose, or the kind asked for
    files = results.files = {results.weights: provider.model_file}
    if args.compare_weights:
        cache = Path(data_dir) / "models"
        source = bundled_model_path()
        compared = {
            kind: prepare_weights(source, kind, cache, convert_weights)
            for kind in ("original", "q8_0", "f16", "bf16")
        }
        files = results.files = {**compared, **files}
        results.quality = await asyncio.to_thread(quality, files, "original")
    results.sizes = {name: path.stat().st_size for name, path in files.items()}
    results.steps = await asyncio.to_thread(step_costs, files, args.threads, args.threads_batch)
    shutil.rmtree(data_dir, ignore_errors=True)  # the converted copies: ~700 MB
    return results


# -- report


def render(results: Results, args: argparse.Namespace, command: str) -> str:
    med = {k: statistics.median(v) for k, v in results.single.items()}
    name = results.model_file.name if results.model_file else "?"
    chose = f" (timed at the first start, it chose `{results.weights}`)"
    chose = chose if args.weights == "auto" else ""
    lines = [
        "## Local model (SmolLM2-135M-Instruct, llama.cpp)",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores (shared, other work running; "
        f"load average {_load(results.load_before)} before, "
        f"{_load(results.load_after)} after), "
        f"Python {platform.python_version()}, llama-cpp-python {_llama_version()}. "
        f"Weights `{args.weights}`{chose}: model file `{name}` for every path "
        "(direct, provider, server, step costs); "
        f"{args.threads} thread(s) for one-token steps and {args.threads_batch} for "
        f"larger ones on every path; flash attention off; n_seq_max 4; greedy, "
        f"max_tokens {args.max_tokens}, {args.rounds} interleaved rounds, medians.",
        "",
        "Single stream (completion tokens / request wall time, prefill included; tokens/s is "
        "the median over rounds, *vs direct* the median of the per-round ratios):",
        "",
        "| path | tokens/s | vs direct (paired) |",
        "|---|---:|---:|",
    ]
    for key, label in [
        ("bundled", "reference: llama-cpp-python on the bundled Q4_1 file"),
        ("direct", "llama-cpp-python `Llama.create_completion(stream=True)`"),
        ("provider", "`LocalProvider.stream` (engine thread, batching on)"),
        ("server", "`POST /api/chat/stream`, `tokenrelay serve --provider local`"),
    ]:
        if key in med:
            lines.append(f"| {label} | {med[key]:.1f} | {paired(results, key):.2f}x |")
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
    cost = results.steps[results.weights]
    one = cost.steps[1]
    lines += [
        "",
        f"Decode step cost by batch size, `{results.weights}` weights (one token per sequence, "
        "interleaved, median):",
        "",
        "| sequences | ms per step | tokens/s | gain over 1 |",
        "|---:|---:|---:|---:|",
    ]
    for n, seconds in cost.steps.items():
        lines.append(
            f"| {n} | {seconds * 1000:.1f} | {n / seconds:.0f} | {one * n / seconds:.2f}x |"
        )
    if results.quality:
        lines += ["", *weights_table(results)]
    lines += ["", *verdict(results)]
    return "\n".join(lines)


def weights_table(results: Results) -> list[str]:
    lines = [
        "Weights compared (`--compare-weights`): the bundled Q4_1 file and its local conversions; "
        f"step costs interleaved across files, prefill of {PREFILL_TOKENS} tokens; quality as "
        "perplexity on 1,000 tokens of README.md + docs/protocol.md and the share of positions "
        "whose most likely next token is the same as with Q4_1. Interleaving makes every step "
        "start with cold caches, so one-sequence steps look slower here than in a steady "
        "single stream; compare the rows with each other:",
        "",
        "| weights | MB | 1 seq ms/step | 4 seq ms/step | 4 seq tokens/s | gain 4 vs 1 | "
        f"prefill {PREFILL_TOKENS} | perplexity | same top token |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, cost in results.steps.items():
        if name not in results.quality:
            continue
        size = results.sizes[name] / 1e6
        one, four = cost.steps[1], cost.steps[4]
        ppl, agree = results.quality[name]
        lines.append(
            f"| {name} | {size:.0f} | {one * 1000:.1f} | {four * 1000:.1f} | {4 / four:.0f} | "
            f"{one * 4 / four:.2f}x | {cost.prefill * 1000:.0f} ms | {ppl:.2f} | {agree:.1%} |"
        )
    return lines


def paired(results: Results, key: str) -> float:
    """Median over rounds of (this path's tokens/s / direct's in the same round): the runs of
    one round are back to back, so this cancels most of the drift of a shared machine's load."""
    pairs = zip(results.single[key], results.single["direct"], strict=True)
    return statistics.median(ours / direct for ours, direct in pairs)


def verdict(results: Results) -> list[str]:
    """The targets, each with the measured value and pass/fail (through the server when it ran,
    else through the provider)."""
    med = {k: statistics.median(v) for k, v in results.single.items()}
    path = "server" if "server" in results.concurrent else "provider"
    row = results.concurrent.get(path)
    checks: list[tuple[str, float, bool]] = []
    if "server" in med:
        ratio = paired(results, "server")
        checks.append(("single stream through the server >= 0.95x direct", ratio, ratio >= 0.95))
    if row is not None:
        checks.append(
            (f"4 users via {path}: TTFT p99 <= 2 s", row["ttft_p99"], row["ttft_p99"] <= 2)
        )
        checks.append(
            (f"4 users via {path}: aggregate >= 1.5x single", row["speedup"], row["speedup"] >= 1.5)
        )
    lines = ["Targets:", ""]
    lines += [f"- {name}: {value:.2f} — {'pass' if ok else 'FAIL'}" for name, value, ok in checks]
    if row is not None and "bundled" in med:
        lines += [
            "",
            f"In absolute terms, 4 users via {path} got {row['aggregate_tps']:.0f} tokens/s "
            f"together, {row['aggregate_tps'] / med['bundled']:.2f}x one stream of the bundled "
            f"Q4_1 file called directly ({med['bundled']:.0f} tokens/s), while one user alone is "
            f"{1 / paired(results, 'bundled'):.2f}x as fast as on Q4_1 (paired).",
        ]
    lines += [
        "",
        "The machine is shared, so numbers move run to run by 10-20 %.",
    ]
    return lines


def _load(avg: tuple[float, float, float]) -> str:
    return " / ".join(f"{x:.2f}" for x in avg)


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
    parser.add_argument("--threads", type=int, default=1, help="threads for one-token steps")
    parser.add_argument(
        "--threads-batch", type=int, default=None, help="default: the server's (every core)"
    )
    parser.add_argument(
        "--weights", default="auto", choices=["auto", "original", "q8_0", "f16", "bf16"]
    )
    parser.add_argument("--no-server", dest="server", action="store_false")
    parser.add_argument(
        "--compare-weights",
        action="store_true",
        help="also time and score the bundled file against its q8_0/f16/bf16 conversions",
    )
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    if args.threads_batch is None:  # what `tokenrelay serve` uses unless told otherwise
        from tokenrelay.providers.local import default_threads

        args.threads_batch = default_threads()[1]
    command = ".venv/bin/python bench/local_model.py " + " ".join(sys.argv[1:])
    before = os.getloadavg()
    print(f"load average before: {_load(before)}", flush=True)
    results = asyncio.run(bench(args))
    results.load_before, results.load_after = before, os.getloadavg()
    print(f"load average after: {_load(results.load_after)}", flush=True)
    section = render(results, args, command.strip())
    print(section)
    raw = {
        "single": results.single,
        "concurrent": results.concurrent,
        "steps": {k: (v.steps, v.prefill) for k, v in results.steps.items()},
        "quality": results.quality,
    }
    print(json.dumps(raw, indent=1))
    if args.write:
        write_section(section)


if __name__ == "__main__":
    main()
