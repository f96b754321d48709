"""The bounded BM25 search's postings budget (pruning.py): time against agreement, at 100,000.

    .venv/bin/python bench/lexical_budget.py [--chunks 100000]

The corpus of bench/semantic_speed.py (the eval chunks repeated to N, so every question term
is common: the hard case for the bound) and the eval questions. For each budget: the search's
p50 wall and CPU time on the reader connection, and how often its top 5 is the exhaustive
search's (budget unbounded). Writes the `lexical-budget` block of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from retrieval_report import update_section
from semantic_eval import SETS, load
from semantic_speed import corpus_docs, eval_chunks

from tokenrelay.retrieval.analysis import query_terms
from tokenrelay.retrieval.pruning import POSTINGS_BUDGET
from tokenrelay.retrieval.sqlite_fts import MAX_QUERY_TERMS, SqliteDocumentStore, search_rows

BUDGETS = (POSTINGS_BUDGET, 6_000, 4_000, 3_000)


async def build(path: Path, n_chunks: int) -> None:
    store = await SqliteDocumentStore.open(path)
    for doc, chunks in corpus_docs(eval_chunks(), n_chunks):
        await store.upsert_many([(doc, chunks)])
    await store.close()


def sweep(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    questions = [q["question"] for name in SETS for q in load(name)]
    terms = [query_terms(q)[:MAX_QUERY_TERMS] for q in questions]

    def top(t: list[str], budget: int) -> list[str]:
        return [r[0] for r in search_rows(conn, t, 5, with_terms=False, budget=budget)]

    exact = [top(t, 10**9) for t in terms]
    rows = []
    for budget in BUDGETS:
        wall, cpu, same = [], [], 0
        for t, want in zip(terms, exact, strict=True):
            w, c = time.perf_counter(), time.process_time()
            got = top(t, budget)
            wall.append(time.perf_counter() - w)
            cpu.append(time.process_time() - c)
            same += got == want
        rows.append(
            f"| {budget:,}{' (in use)' if budget == POSTINGS_BUDGET else ''} |"
            f" {statistics.median(wall) * 1000:.1f} ms | {statistics.median(cpu) * 1000:.1f} ms |"
            f" {same}/{len(terms)} |"
        )
        print(rows[-1], flush=True)
    conn.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tokenrelay.sqlite3"
        asyncio.run(build(path, args.chunks))
        rows = sweep(path)
    loadavg = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    body = "\n".join(
        [
            "### Bounded lexical search: the postings budget",
            "",
            f"`.venv/bin/python bench/lexical_budget.py --chunks {args.chunks}` (load average"
            f" {loadavg}): SQLite FTS5, the eval chunks repeated to {args.chunks:,} (every"
            " question term common, the hard case), all eval questions, top 5 on the reader"
            " connection. CPU time is the steadier figure on the shared cores.",
            "",
            "| postings budget | p50 wall | p50 CPU | top 5 = exhaustive |",
            "|---|---|---|---|",
            *rows,
        ]
    )
    print(body)
    if not args.no_write:
        update_section("lexical-budget", body)


if __name__ == "__main__":
    main()
