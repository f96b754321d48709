"""Retrieval speed: ingest MB/s and search p50/p95 at 100,000 chunks (SQLite FTS5).

    .venv/bin/python bench/retrieval_speed.py      # 100,000 chunks, writes docs/benchmarks.md
    .venv/bin/python bench/retrieval_speed.py --chunks 10000 --no-write   # a quick look
    .venv/bin/python bench/retrieval_speed.py --db /tmp/rag100k.sqlite3   # keep/reuse the index

Three measurements, each on a deterministic (seeded) synthetic corpus: a Zipf-distributed
vocabulary of English-like words and Korean words with particles, written as markdown documents
with headings, one third Korean.

1. Ingest: about 8 MB of such documents as files in a folder, plus the eval documents
   (eval/retrieval/docs, real Korean and English guides), loaded with `ingest_paths` into a
   fresh store; MB/s of UTF-8 text, covering reading, chunking, analysis and the SQLite writes.
   The same is measured for one document per call (`ingest_text`, as `POST /api/documents`).
2. Index build: documents are generated until there are `--chunks` chunks and stored in
   batches with `store_prepared`; generating the text is not counted.
3. Search: a few hundred 2-5 word queries (40 % Korean, with particles, some English with stop
   words), run one after another on the warm store, rerank on and off.

The machine's load average is printed and written with the table: other engineers' tests share
the two cores, so compare numbers taken at similar load.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from retrieval_report import update_section

from tokenrelay.retrieval.base import DocumentStore
from tokenrelay.retrieval.ingest import ingest_paths, ingest_text, prepare_text, store_prepared
from tokenrelay.retrieval.sqlite_fts import SqliteDocumentStore

SEED = 20241121
ROOT = Path(__file__).resolve().parent.parent
EVAL_DOCS = ROOT / "eval" / "retrieval" / "docs"
CONSONANTS = "bcdfghjklmnprstvwz"
VOWELS = "aeiou"
HANGUL = [chr(0xAC00 + i * 28 + f) for i in range(0, 399, 7) for f in (0, 4, 8, 16)]
PARTICLES = ["", "", "", "은", "는", "이", "가", "을", "를", "의", "에", "에서", "으로"]
QUESTION_WORDS_EN = ["what is the", "how do i", "where is", "when does the", "", "", ""]
QUESTION_ENDINGS_KO = ["", "", "는 어디인가요", "은 얼마인가요", "에 대해 알려주세요"]
BATCH_CHARS = 2_000_000


def english_word(rng: random.Random) -> str:
    return "".join(rng.choice(CONSONANTS) + rng.choice(VOWELS) for _ in range(rng.randint(1, 4)))


def korean_word(rng: random.Random) -> str:
    return "".join(rng.choice(HANGUL) for _ in range(rng.randint(2, 4)))


class Corpus:
    """Deterministic documents and queries; Zipf weights are summed once (fast `choices`)."""

    def __init__(self, seed: int = SEED, vocab: int = 40_000) -> None:
        self.rng = random.Random(seed)
        self.en = list(dict.fromkeys(english_word(self.rng) for _ in range(vocab)))
        self.ko = list(dict.fromkeys(korean_word(self.rng) for _ in range(vocab)))
        self.en_cum = list(itertools.accumulate(1 / (r + 1) for r in range(len(self.en))))
        self.ko_cum = list(itertools.accumulate(1 / (r + 1) for r in range(len(self.ko))))

    def words(self, korean: bool, n: int) -> list[str]:
        if korean:
            stems = self.rng.choices(self.ko, cum_weights=self.ko_cum, k=n)
            endings = self.rng.choices(PARTICLES, k=n)
            return [s + e for s, e in zip(stems, endings, strict=True)]
        return self.rng.choices(self.en, cum_weights=self.en_cum, k=n)

    def paragraph(self, korean: bool) -> str:
        words = self.words(korean, self.rng.randint(40, 110))
        return " ".join(" ".join(words[i : i + 12]) + "." for i in range(0, len(words), 12))

    def document(self, korean: bool) -> str:
        parts = [f"# {' '.join(self.words(korean, 3))}"]
        for _ in range(self.rng.randint(3, 8)):
            parts.append(f"## {' '.join(self.words(korean, 2))}")
            parts.extend(self.paragraph(korean) for _ in range(self.rng.randint(1, 3)))
        return "\n\n".join(parts) + "\n"

    def query(self) -> str:
        korean = self.rng.random() < 0.4
        pool = self.ko if korean else self.en
        n = len(pool)
        # log-uniform ranks: frequent and rare words mixed
        picks = [pool[int(n ** self.rng.random()) - 1] for _ in range(self.rng.randint(2, 5))]
        if korean:
            picks[0] += self.rng.choice(PARTICLES)
            return " ".join(picks) + self.rng.choice(QUESTION_ENDINGS_KO)
        return f"{self.rng.choice(QUESTION_WORDS_EN)} {' '.join(picks)}".strip()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


async def measure_ingest(corpus: Corpus, mb: float, tmp: Path) -> dict[str, float]:
    folder = tmp / "files"
    folder.mkdir()
    shutil.copytree(EVAL_DOCS, folder / "eval")
    total = 0
    i = 0
    while total < mb * 1e6:
        text = corpus.document(korean=i % 3 == 0)
        (folder / f"doc{i:05d}.md").write_text(text, encoding="utf-8")
        total += len(text.encode("utf-8"))
        i += 1
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    store = await SqliteDocumentStore.open(tmp / "ingest-batched.sqlite3")
    started, cpu = time.perf_counter(), time.process_time()
    report = await ingest_paths(store, [folder])
    batched_s = time.perf_counter() - started
    batched_cpu = time.process_time() - cpu
    _, chunks = await store.count()
    started = time.perf_counter()
    again = await ingest_paths(store, [folder])
    unchanged_s = time.perf_counter() - started
    await store.close()
    assert again.counts()["unchanged"] == len(report.results)
    texts = [f.read_text("utf-8") for f in sorted(folder.rglob("*.md"))]
    store = await SqliteDocumentStore.open(tmp / "ingest-single.sqlite3")
    started = time.perf_counter()
    for j, text in enumerate(texts):
        await ingest_text(store, text, source=f"single/{j}.md")
    single_s = time.perf_counter() - started
    await store.close()
    return {
        "mb": size / 1e6,
        "files": len(report.results),
        "chunks": chunks,
        "batched": size / 1e6 / batched_s,
        "batched_cpu": size / 1e6 / batched_cpu,
        "unchanged": size / 1e6 / unchanged_s,
        "single": size / 1e6 / single_s,
    }


async def build_index(
    store: SqliteDocumentStore, corpus: Corpus, target: int
) -> tuple[int, int, float, float, float]:
    """(documents, chunks, MB, seconds storing, seconds generating)."""
    docs = chunks = 0
    total = 0
    store_s = gen_s = 0.0
    while chunks < target:
        batch = []
        size = 0
        while size < BATCH_CHARS and chunks < target:
            t0 = time.perf_counter()
            text = corpus.document(korean=docs % 3 == 0)
            t1 = time.perf_counter()
            prepared = prepare_text(text, source=f"synthetic/{docs}.md")
            gen_s += t1 - t0
            store_s += time.perf_counter() - t1
            batch.append(prepared)
            size += len(text)
            total += len(text.encode("utf-8"))
            chunks += len(prepared.chunks)
            docs += 1
        t0 = time.perf_counter()
        await store_prepared(store, batch)
        store_s += time.perf_counter() - t0
    return docs, chunks, total / 1e6, store_s, gen_s


async def time_search(
    store: DocumentStore, queries: list[str]
) -> tuple[float, float, float, float]:
    """(p50 ms, p95 ms, share of queries with hits, CPU ms per query) at top_k=5."""
    for q in queries[:20]:  # warm the page cache
        await store.search(q, top_k=5)
    times: list[float] = []
    found = 0
    cpu = time.process_time()
    for q in queries:
        started = time.perf_counter()
        hits = await store.search(q, top_k=5)
        times.append((time.perf_counter() - started) * 1000)
        found += bool(hits)
    cpu_ms = (time.process_time() - cpu) * 1000 / len(queries)
    return statistics.median(times), percentile(times, 95), found / len(queries), cpu_ms


async def compare_exhaustive(
    store: SqliteDocumentStore, queries: list[str]
) -> tuple[float, float, float, float]:
    """How often the bounded search (pruning.py) returns what ranking every match returns:
    (same top 5, same top 1, mean overlap@5, exhaustive p50 ms)."""
    store.rerank = False
    budget = store.postings_budget
    bounded = [[h.id for h in await store.search(q, top_k=5)] for q in queries]
    store.postings_budget = 10**12
    exact: list[list[str]] = []
    times: list[float] = []
    for q in queries:
        started = time.perf_counter()
        exact.append([h.id for h in await store.search(q, top_k=5)])
        times.append((time.perf_counter() - started) * 1000)
    store.postings_budget = budget
    pairs = list(zip(bounded, exact, strict=True))
    return (
        sum(b == e for b, e in pairs) / len(pairs),
        sum(b[:1] == e[:1] for b, e in pairs) / len(pairs),
        statistics.mean(len(set(b) & set(e)) / max(1, len(e)) for b, e in pairs),
        statistics.median(times),
    )


async def measure_postgres(folder: Path, size: float, queries: list[str]) -> str | None:
    """The same ingest folder and queries on PostgreSQL (a ~10,000-chunk index), if reachable."""
    from tokenrelay.retrieval.postgres import PostgresDocumentStore

    url = os.environ.get(
        "TOKENRELAY_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
    )
    schema = f"rag_speed_{uuid.uuid4().hex[:8]}"
    try:
        store = await PostgresDocumentStore.open(url, schema=schema, max_size=2)
    except Exception as e:
        print(f"PostgreSQL skipped: {e}")
        return None
    try:
        started = time.perf_counter()
        await ingest_paths(store, [folder])
        mb_s = size / (time.perf_counter() - started)
        _, chunks = await store.count()
        p50, p95, _, _ = await time_search(store, queries)
        line = (
            f"| PostgreSQL: ingest_paths of the same folder / search p50 / p95 at {chunks:,}"
            f" chunks, rerank off | {mb_s:.2f} MB/s / {p50:.2f} / {p95:.2f} ms | |"
        )
        print(line, f"(load {load()})")
        return line
    finally:
        async with store._pool.acquire() as conn:
            await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await store.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--compare", type=int, default=100, help="queries checked exhaustively")
    parser.add_argument("--ingest-mb", type=float, default=8.0)
    parser.add_argument("--db", type=Path, help="keep the index here (reused if it exists)")
    parser.add_argument("--postgres", action="store_true", help="also measure PostgreSQL")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    start_load = load()
    print(f"load average at start: {start_load}")
    corpus = Corpus()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        ingest = await measure_ingest(Corpus(SEED + 1), args.ingest_mb, tmp)
        ingest_load = load()
        print(
            f"ingest {ingest['mb']:.1f} MB ({ingest['files']:.0f} files, {ingest['chunks']:.0f}"
            f" chunks): ingest_paths {ingest['batched']:.2f} MB/s"
            f" ({ingest['batched_cpu']:.2f} MB per CPU second), unchanged re-ingest"
            f" {ingest['unchanged']:.2f} MB/s, one ingest_text per document"
            f" {ingest['single']:.2f} MB/s (load {ingest_load})"
        )
        db = args.db or tmp / "speed.sqlite3"
        store = await SqliteDocumentStore.open(db)
        docs, chunks = await store.count()
        build = ""
        if chunks < args.chunks:
            docs, chunks, mb, store_s, gen_s = await build_index(store, corpus, args.chunks)
            build = (
                f"| index build, batched `store_prepared` ({mb:.1f} MB, {docs:,} documents;"
                f" generating the text, {gen_s:.0f} s, not counted) |"
                f" {mb / store_s:.2f} MB/s ({store_s:.0f} s) | |"
            )
            print(
                f"index built: {chunks} chunks, {mb:.1f} MB in {store_s:.0f} s:"
                f" {mb / store_s:.2f} MB/s (load {load()})"
            )
        queries = [corpus.query() for _ in range(args.queries)]
        results: dict[str, tuple[float, float, float, float]] = {}
        search_load = ""
        for rerank in (True, False):
            store.rerank = rerank
            label = "on" if rerank else "off"
            results[label] = await time_search(store, queries)
            search_load += f" {label}: {load()}"
            print(
                f"search rerank={label}: p50 {results[label][0]:.2f} ms, "
                f"p95 {results[label][1]:.2f} ms, CPU {results[label][3]:.2f} ms/query,"
                f" queries with hits {results[label][2]:.0%} (load {load()})"
            )
        agreement_q = queries[: args.compare]
        agreement = await compare_exhaustive(store, agreement_q)
        print(
            f"bounded vs exhaustive BM25 on {args.compare} queries: same top 5"
            f" {agreement[0]:.0%}, same top 1 {agreement[1]:.0%}, overlap@5 {agreement[2]:.2f};"
            f" exhaustive p50 {agreement[3]:.1f} ms (load {load()})"
        )
        await store.close()
        postgres = (
            await measure_postgres(tmp / "files", ingest["mb"], queries) if args.postgres else None
        )
    command = (
        ".venv/bin/python bench/retrieval_speed.py"
        + (f" --chunks {args.chunks}" if args.chunks != 100_000 else "")
        + (" --postgres" if args.postgres else "")
    )
    table = "\n".join(
        [
            f"### Retrieval speed (SQLite FTS5, {chunks:,} chunks, synthetic corpus,"
            " 2 shared cores)",
            "",
            f"Command: `{command}`",
            "",
            "| measure | result | goal |",
            "|---|---|---|",
            f"| ingest, `ingest_paths` of a folder ({ingest['mb']:.1f} MB, {ingest['files']:.0f}"
            f" files, {ingest['chunks']:,.0f} chunks) | {ingest['batched']:.2f} MB/s"
            f" ({ingest['batched_cpu']:.2f} MB per CPU second) | ≥ 2 MB/s |",
            f"| ingest, one `ingest_text` per document (as `POST /api/documents`) |"
            f" {ingest['single']:.2f} MB/s | |",
            f"| re-ingest of the unchanged folder (no-op) | {ingest['unchanged']:.2f} MB/s | |",
            *([build] if build else []),
            f"| search p50 / p95, rerank off (default), top_k=5, {len(queries)} queries"
            f" (CPU per query) | {results['off'][0]:.2f} / {results['off'][1]:.2f} ms"
            f" ({results['off'][3]:.2f} ms) | p50 ≤ 10 ms |",
            f"| search p50 / p95, rerank on | {results['on'][0]:.2f} /"
            f" {results['on'][1]:.2f} ms ({results['on'][3]:.2f} ms) | p50 ≤ 10 ms |",
            f"| search p50 ranking every match (no bound), {len(agreement_q)} queries |"
            f" {agreement[3]:.1f} ms | |",
            f"| bounded = exhaustive: same top 5 / same top 1 / overlap@5 |"
            f" {agreement[0]:.0%} / {agreement[1]:.0%} / {agreement[2]:.2f} | |",
            *([postgres] if postgres else []),
            "",
            f"Load average (1/5/15 min) at start {start_load}, after ingest {ingest_load},"
            f" during search{search_load}. Queries with hits: {results['off'][2]:.0%}."
            " The bounded search (pruning.py) ranks only the chunks holding the rarest query"
            " terms; the last two SQLite rows show what ranking every match would cost and how"
            " often the answers agree.",
            *(
                [
                    "",
                    "PostgreSQL's search at 100,000 chunks, lexical and hybrid, with the SQLite"
                    " store as the baseline in the same run, is measured by"
                    " bench/postgres_speed.py (`postgres-speed` below).",
                ]
                if postgres
                else []
            ),
        ]
    )
    print(table)
    if not args.no_write:
        update_section("speed", table)


if __name__ == "__main__":
    asyncio.run(main())
