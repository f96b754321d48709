"""Retrieval speed: ingest MB/s and search p50/p95 at 100,000 chunks (SQLite FTS5).

    .venv/bin/python bench/retrieval_speed.py      # 100,000 chunks, writes docs/benchmarks.md
    .venv/bin/python bench/retrieval_speed.py --chunks 10000 --no-write   # a quick look

The corpus is synthetic and deterministic (seeded): a Zipf-distributed vocabulary of English-like
words and Korean words with particles, written as markdown documents with headings, about one
third Korean. Ingest time covers chunking, analysis and the SQLite writes (ingest_text).
Queries are 2-5 words drawn from the same vocabulary (frequent and rare words mixed), run one
after another on a warm store; rerank on (the default) and off.
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

from tokenrelay.retrieval.ingest import ingest_text
from tokenrelay.retrieval.sqlite_fts import SqliteDocumentStore

SEED = 20241121
CONSONANTS = "bcdfghjklmnprstvwz"
VOWELS = "aeiou"
HANGUL = [chr(0xAC00 + i * 28 + f) for i in range(0, 399, 7) for f in (0, 4, 8, 16)]
PARTICLES = ["", "", "", "은", "는", "이", "가", "을", "를", "의", "에", "에서", "으로"]


def english_word(rng: random.Random) -> str:
    return "".join(rng.choice(CONSONANTS) + rng.choice(VOWELS) for _ in range(rng.randint(1, 4)))


def korean_word(rng: random.Random) -> str:
    return "".join(rng.choice(HANGUL) for _ in range(rng.randint(2, 4)))


class Corpus:
    def __init__(self, seed: int = SEED, vocab: int = 40_000) -> None:
        self.rng = random.Random(seed)
        self.en = list(dict.fromkeys(english_word(self.rng) for _ in range(vocab)))
        self.ko = list(dict.fromkeys(korean_word(self.rng) for _ in range(vocab)))
        self.en_weights = [1 / (r + 1) for r in range(len(self.en))]
        self.ko_weights = [1 / (r + 1) for r in range(len(self.ko))]

    def words(self, korean: bool, n: int) -> list[str]:
        if korean:
            stems = self.rng.choices(self.ko, weights=self.ko_weights, k=n)
            return [s + self.rng.choice(PARTICLES) for s in stems]
        return self.rng.choices(self.en, weights=self.en_weights, k=n)

    def paragraph(self, korean: bool) -> str:
        words = self.words(korean, self.rng.randint(40, 110))
        sentences = [" ".join(words[i : i + 12]) + "." for i in range(0, len(words), 12)]
        return " ".join(sentences)

    def document(self, korean: bool) -> str:
        parts = [f"# {' '.join(self.words(korean, 3))}"]
        for _ in range(self.rng.randint(3, 8)):
            parts.append(f"## {' '.join(self.words(korean, 2))}")
            parts.extend(self.paragraph(korean) for _ in range(self.rng.randint(1, 3)))
        return "\n\n".join(parts) + "\n"

    def query(self) -> str:
        korean = self.rng.random() < 0.4
        pool, n = (self.ko, len(self.ko)) if korean else (self.en, len(self.en))
        picks = [pool[int(n ** self.rng.random()) - 1] for _ in range(self.rng.randint(2, 5))]
        return " ".join(picks)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    corpus = Corpus()
    with tempfile.TemporaryDirectory() as tmp:
        store = await SqliteDocumentStore.open(Path(tmp) / "speed.sqlite3")
        total_bytes = 0
        ingest_s = 0.0
        chunks = 0
        docs = 0
        while chunks < args.chunks:
            text = corpus.document(korean=docs % 3 == 0)
            started = time.perf_counter()
            result = await ingest_text(store, text, source=f"synthetic/{docs}.md")
            ingest_s += time.perf_counter() - started
            total_bytes += len(text.encode("utf-8"))
            chunks += result.document.chunk_count
            docs += 1
        mb_s = total_bytes / 1e6 / ingest_s
        print(
            f"ingested {docs} documents, {chunks} chunks, {total_bytes / 1e6:.1f} MB in "
            f"{ingest_s:.1f} s: {mb_s:.2f} MB/s"
        )
        queries = [corpus.query() for _ in range(args.queries)]
        results: dict[str, tuple[float, float, float]] = {}
        for rerank in (True, False):
            store.rerank = rerank
            for q in queries[:20]:  # warm the page cache
                await store.search(q, top_k=5)
            times: list[float] = []
            found = 0
            for q in queries:
                started = time.perf_counter()
                hits = await store.search(q, top_k=5)
                times.append((time.perf_counter() - started) * 1000)
                found += bool(hits)
            label = "on" if rerank else "off"
            results[label] = (statistics.median(times), percentile(times, 95), found / len(queries))
            print(
                f"search rerank={label}: p50 {results[label][0]:.2f} ms, "
                f"p95 {results[label][1]:.2f} ms, queries with hits {results[label][2]:.0%}"
            )
        await store.close()
    command = ".venv/bin/python bench/retrieval_speed.py" + (
        f" --chunks {args.chunks}" if args.chunks != 100_000 else ""
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
            f"| ingest ({total_bytes / 1e6:.1f} MB of text, {docs:,} documents) | "
            f"{mb_s:.2f} MB/s | ≥ 2 MB/s |",
            f"| search p50 / p95, rerank on (default), top_k=5, {len(queries)} queries | "
            f"{results['on'][0]:.2f} / {results['on'][1]:.2f} ms | p50 ≤ 10 ms |",
            f"| search p50 / p95, rerank off | {results['off'][0]:.2f} /"
            f" {results['off'][1]:.2f} ms | p50 ≤ 10 ms |",
        ]
    )
    print(table)
    if not args.no_write:
        update_section("speed", table)


if __name__ == "__main__":
    asyncio.run(main())
