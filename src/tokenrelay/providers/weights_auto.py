"""`local_weights=auto`: which weights of the bundled model this machine runs best, measured.

Why measured: how fast llama.cpp multiplies Q4_1 against F16 weights depends on the build and
the CPU, and the answer flipped between machines. On the session that chose F16 (a native
build, one batch thread) the bundled Q4_1 file gained nothing from batching, so F16 was made
the default; on every machine since (the portable AVX2 build, every core for batches) Q4_1
was as fast or faster at every batch size, by a wide margin (docs/benchmarks.md, "Local
model"). A fixed choice is wrong somewhere, so at the first start the candidates are timed, on
this machine and with this server's threads, and the choice is cached next to the converted
files: later starts read it.

The measure is what the local model is for when shared: tokens per second of a decode step
with `n_seq_max` sequences. One-sequence steps and a prefill are timed too, for the log and
the cache file. A tie (within `TIE`) goes to the original file: no conversion, less memory.
bench/local_model.py times its step-cost table with the same function (`time_decode_steps`).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tokenrelay.providers.llama_runtime import LlamaRuntime, RuntimeConfig
from tokenrelay.providers.model_files import Converter, converted_path, prepare_weights

logger = logging.getLogger("tokenrelay.local")

CANDIDATES = ("original", "f16")
TIE = 0.05  # within 5 % of the best batched tokens/s counts as as fast
CHOICE_FILE = "weights-auto.json"
ROUNDS = 5  # timed steps per batch size and candidate, interleaved across candidates


@dataclass(frozen=True)
class StepTimes:
    """Median seconds per decode step by how many sequences it decodes (one token each), and
    of one prefill."""

    steps: dict[int, float]
    prefill: float

    def tokens_s(self, sequences: int) -> float:
        return sequences / self.steps[sequences]


def choose(timings: dict[str, StepTimes]) -> str:
    """The candidate with the most tokens/s in the largest steps timed; "original" on a tie
    (pure)."""
    n = max(max(t.steps) for t in timings.values())
    best = max(t.tokens_s(n) for t in timings.values())
    original = timings.get("original")
    if original is not None and original.tokens_s(n) >= best * (1 - TIE):
        return "original"
    return max(timings, key=lambda kind: timings[kind].tokens_s(n))


Measure = Callable[[dict[str, Path]], dict[str, StepTimes]]


def auto_weights(
    source: Path,
    cache_dir: Path,
    convert: Converter,
    measure: Measure,
    *,
    context: Sequence[object] = (),
) -> tuple[str, Path]:
    """What `auto` loads, as (weights, file): the cached choice for this source file and
    `context` (what the timing depends on besides the file: build, CPU, threads, sequences),
    else the candidates timed with `measure` and the choice stored. The losing conversion is
    deleted. Blocking."""
    key = _key(source, context)
    choices = _read(cache_dir / CHOICE_FILE)
    known = choices.get(key)
    if isinstance(known, dict) and known.get("weights") in CANDIDATES:
        kind = str(known["weights"])  # converted again if its file was deleted
        return kind, prepare_weights(source, kind, cache_dir, convert)
    files = {kind: prepare_weights(source, kind, cache_dir, convert) for kind in CANDIDATES}
    started = time.perf_counter()
    try:
        timings = measure(files)
    except Exception:  # the file as it is; timed again at the next start
        logger.warning("could not time the local weights; using the original file", exc_info=True)
        return "original", source
    kind = choose(timings)
    logger.info(
        "local weights chosen",
        extra={
            "event": "local_weights_chosen",
            "weights": kind,
            "measured_s": round(time.perf_counter() - started, 3),
            **{f"{k}_{f}": round(v, 6) for k, t in timings.items() for f, v in _fields(t)},
        },
    )
    choices[key] = {
        "weights": kind,
        "source": source.name,
        "context": [str(c) for c in context],
        "timings": {k: asdict(t) for k, t in timings.items()},
    }
    try:
        _write(cache_dir / CHOICE_FILE, choices)
    except OSError:  # a read-only data dir: the choice holds for this run
        logger.warning("could not store the local weights choice in %s", cache_dir, exc_info=True)
    for other in CANDIDATES:
        if other not in (kind, "original"):
            converted_path(source, other, cache_dir).unlink(missing_ok=True)
    return kind, files[kind]


def machine_context() -> list[str]:
    """What the timing depends on besides the file and the server's settings: the llama.cpp
    build (llama-cpp-python's version) and the CPU."""
    try:
        version = importlib.metadata.version("llama-cpp-python")
    except Exception:
        version = "?"
    return [f"llama-cpp-python {version}", _cpu_model(), f"{os.cpu_count()} cpus"]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _fields(t: StepTimes) -> list[tuple[str, float]]:
    return [*((f"step_{n}_s", v) for n, v in t.steps.items()), ("prefill_s", t.prefill)]


def _key(source: Path, context: Sequence[object]) -> str:
    stat = source.stat()
    raw = "|".join(
        [str(source.resolve()), str(stat.st_size), str(stat.st_mtime_ns), *map(str, context)]
    )
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write(path: Path, data: dict[str, Any]) -> None:
    """Written to a temporary name, then renamed: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        partial.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def time_decode_steps(
    files: dict[str, Path],
    *,
    sizes: Sequence[int],
    threads: int,
    threads_batch: int,
    rounds: int = ROUNDS,
    prompt: int = 64,
) -> dict[str, StepTimes]:
    """Decode steps of each of `sizes` sequences, and a `prompt`-token prefill, on each file;
    rounds interleaved across the files so that a noisy neighbour slows them alike (the first
    round warms up and is not counted). About a second for SmolLM2 on 2 cores with the
    defaults; bench/local_model.py times its table with more sizes and rounds."""

    sizes = sorted(set(sizes))
    n = sizes[-1]
    loaded: dict[str, Any] = {}
    steps: dict[str, dict[int, list[float]]] = {k: {size: [] for size in sizes} for k in files}
    prefills: dict[str, list[float]] = {k: [] for k in files}
    positions: dict[str, list[int]] = {k: [0] * n for k in files}
    try:
        for kind, path in files.items():
            config = RuntimeConfig(
                model_path=path,
                n_ctx_per_seq=prompt + len(sizes) * (rounds + 1) + 8,
                n_seq_max=n,
                n_batch=prompt,
                n_threads=threads,
                n_threads_batch=threads_batch,
                flash_attn=False,
            )
            runtime = LlamaRuntime.load(config)
            loaded[kind] = (runtime, runtime.new_batch(prompt))
        for kind, (runtime, batch) in loaded.items():  # every sequence gets a context
            for seq in range(n):
                batch.clear()
                for i in range(prompt):
                    batch.add(100 + i, i, seq, i == prompt - 1)
                start = time.perf_counter()
                _decode(runtime, batch)
                prefills[kind].append(time.perf_counter() - start)
                positions[kind][seq] = prompt
        for r in range(rounds + 1):
            for size in sizes:
                for kind, (runtime, batch) in loaded.items():
                    batch.clear()
                    pos = positions[kind]
                    for seq in range(size):
                        batch.add(200 + r, pos[seq], seq, True)
                        pos[seq] += 1
                    start = time.perf_counter()
                    _decode(runtime, batch)
                    if r:
                        steps[kind][size].append(time.perf_counter() - start)
    finally:
        for runtime, batch in loaded.values():
            batch.close()
            runtime.close()
    return {
        kind: StepTimes(
            steps={size: statistics.median(v) for size, v in steps[kind].items()},
            prefill=statistics.median(prefills[kind]),
        )
        for kind in files
    }


def _decode(runtime: Any, batch: Any) -> None:
    if runtime.decode(batch) != 0:
        raise RuntimeError("llama.cpp could not decode while timing the local weights")
