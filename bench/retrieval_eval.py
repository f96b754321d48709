"""Retrieval quality on eval/retrieval: recall@5 and MRR per language, per store.

    .venv/bin/python bench/retrieval_eval.py            # SQLite, and PostgreSQL when reachable
    .venv/bin/python bench/retrieval_eval.py --misses   # also print the questions that missed

A hit counts when a returned chunk comes from the question's document and its heading path
contains the expected section. Follow-up questions are expanded with `expand_query` from
their `history`, exactly as the chat pipeline does. Writes the table to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from retrieval_report import update_section

from tokenrelay.retrieval.base import DocumentStore, SearchHit
from tokenrelay.retrieval.ingest import ingest_paths
from tokenrelay.retrieval.query import expand_query
from tokenrelay.retrieval.sqlite_fts import SqliteDocumentStore

ROOT = Path(__file__).resolve().parent.parent
EVAL = ROOT / "eval" / "retrieval"
K = 5
STRESS_BUDGET = 20
COMMAND = ".venv/bin/python bench/retrieval_eval.py"


@dataclass
class Scores:
    n: int = 0
    hits: int = 0
    rr: float = 0.0
    follow_n: int = 0
    follow_hits: int = 0

    def line(self) -> str:
        follow = f"{self.follow_hits}/{self.follow_n}" if self.follow_n else "-"
        return f"{self.n} | {self.hits / self.n:.3f} | {self.rr / self.n:.3f} | {follow}"


def relevant(hit: SearchHit, wanted: list[dict[str, str]], docs_root: Path) -> bool:
    source = hit.metadata.get("source", "")
    for want in wanted:
        if source == str((docs_root / want["doc"]).resolve()) and want["section"] in hit.heading:
            return True
    return False


async def evaluate(
    store: DocumentStore, questions: list[dict[str, Any]], misses: bool
) -> dict[str, Scores]:
    scores: dict[str, Scores] = {}
    for q in questions:
        history = [(role, content) for role, content in q["history"]]
        query = expand_query(q["question"], history)
        hits = await store.search(query, top_k=K)
        rank = next(
            (i for i, h in enumerate(hits, 1) if relevant(h, q["relevant"], EVAL / "docs")), 0
        )
        s = scores.setdefault(q["lang"], Scores())
        s.n += 1
        s.hits += rank > 0
        s.rr += 1 / rank if rank else 0.0
        if q["history"]:
            s.follow_n += 1
            s.follow_hits += rank > 0
        if misses and rank != 1:
            got = [
                f"{h.metadata['source'].split('/docs/')[-1]}#{h.heading.split(' > ')[-1]}"
                for h in hits[:3]
            ]
            print(f"  {q['id']} rank={rank or '-'} q={query!r} want={q['relevant'][0]} got={got}")
    return scores


async def open_postgres(schema: str) -> DocumentStore | None:
    url = os.environ.get(
        "TOKENRELAY_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
    )
    try:
        from tokenrelay.retrieval.postgres import PostgresDocumentStore

        return await PostgresDocumentStore.open(url, schema=schema, max_size=2)
    except Exception as e:
        print(f"PostgreSQL skipped: {e}")
        return None


async def drop_schema(store: DocumentStore, schema: str) -> None:
    pool = store._pool  # type: ignore[attr-defined]
    async with pool.acquire() as conn:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--misses", action="store_true")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    questions = [
        json.loads(line)
        for line in (EVAL / "questions.jsonl").read_text("utf-8").splitlines()
        if line.strip()
    ]
    docs = sorted((EVAL / "docs").rglob("*.md"))
    rows: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        for rerank in (True, False):
            store = await SqliteDocumentStore.open(
                Path(tmp) / f"eval-{rerank}.sqlite3", rerank=rerank
            )
            report = await ingest_paths(store, [EVAL / "docs"])
            _, chunks = await store.count()
            print(f"sqlite rerank={rerank}: {len(report.results)} documents, {chunks} chunks")
            scores = await evaluate(store, questions, args.misses)
            for lang in ("ko", "en"):
                rows.append(
                    f"| SQLite FTS5 | {'on' if rerank else 'off'} | {lang} |"
                    f" {scores[lang].line()} |"
                )
            if not rerank:
                # the corpus is small, so normal searches rank every match; a tiny budget makes
                # them bounded (pruning.py), to show what bounding costs in quality
                store.postings_budget = STRESS_BUDGET
                scores = await evaluate(store, questions, args.misses)
                for lang in ("ko", "en"):
                    rows.append(
                        f"| SQLite FTS5, bounded to {STRESS_BUDGET} postings | off | {lang} |"
                        f" {scores[lang].line()} |"
                    )
            await store.close()
    schema = f"rag_eval_{uuid.uuid4().hex[:8]}"
    pg = await open_postgres(schema)
    if pg is not None:
        try:
            await ingest_paths(pg, [EVAL / "docs"])
            for rerank in (True, False):
                pg.rerank = rerank  # type: ignore[attr-defined]
                scores = await evaluate(pg, questions, args.misses)
                for lang in ("ko", "en"):
                    rows.append(
                        f"| PostgreSQL | {'on' if rerank else 'off'} | {lang} |"
                        f" {scores[lang].line()} |"
                    )
            pg.postings_budget = STRESS_BUDGET  # type: ignore[attr-defined]
            scores = await evaluate(pg, questions, args.misses)
            for lang in ("ko", "en"):
                rows.append(
                    f"| PostgreSQL, bounded to {STRESS_BUDGET} postings | off | {lang} |"
                    f" {scores[lang].line()} |"
                )
        finally:
            await drop_schema(pg, schema)
            await pg.close()
    table = "\n".join(
        [
            f"### Retrieval quality (eval/retrieval: {len(docs)} documents,"
            f" {len(questions)} questions)",
            "",
            f"Command: `{COMMAND}`",
            "",
            "| store | rerank | lang | questions | recall@5 | MRR | follow-ups found |",
            "|---|---|---|---|---|---|---|",
            *rows,
        ]
    )
    print(table)
    if not args.no_write:
        update_section("eval", table)


if __name__ == "__main__":
    asyncio.run(main())
