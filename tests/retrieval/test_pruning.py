"""Bounded search (pruning.py): the plan, the rescoring formula, and agreement with FTS5."""

from __future__ import annotations

import random
from pathlib import Path

from tokenrelay.retrieval.analysis import analyze
from tokenrelay.retrieval.bm25 import bm25
from tokenrelay.retrieval.ingest import prepare_text, store_prepared
from tokenrelay.retrieval.pruning import plan_query, rescore
from tokenrelay.retrieval.rerank import finalize, hit_terms
from tokenrelay.retrieval.sqlite_fts import SqliteDocumentStore


def test_plan_within_budget_is_exhaustive_and_drops_unknown_terms() -> None:
    plan = plan_query(["a", "zzz", "b"], {"a": 10, "b": 20}, budget=100)
    assert plan.select == ("a", "b") and plan.exhaustive


def test_plan_selects_the_rarest_terms_in_query_order() -> None:
    df = {"common": 900, "rare": 5, "mid": 60, "other": 40}
    plan = plan_query(["common", "rare", "mid", "other"], df, budget=100)
    assert plan.select == ("rare", "other")
    assert plan.score_only == ("common", "mid")
    assert not plan.exhaustive


def test_plan_keeps_one_term_over_budget() -> None:
    plan = plan_query(["x", "y"], {"x": 500, "y": 800}, budget=100)
    assert plan.select == ("x",) and plan.score_only == ("y",)


def test_rescore_is_bm25() -> None:
    rng = random.Random(3)
    vocab = [f"w{i}" for i in range(30)]
    df = {w: rng.randint(1, 50) for w in vocab}
    for _ in range(50):
        head = rng.choices(vocab, k=rng.randint(0, 5))
        body = rng.choices(vocab, k=rng.randint(1, 60))
        query = rng.sample(vocab, 4)
        expected = bm25(query, head, body, df, 100, 40.0)
        got = rescore(query, " ".join(head), " ".join(body), df, 100, 40.0)
        assert abs(got - expected) < 1e-9


def _corpus() -> list[str]:
    """Every chunk holds 'seoul'; a few hold rarer words."""
    rng = random.Random(7)
    words = ["palace", "market", "museum", "river", "tower", "garden", "temple", "bridge"]
    docs = []
    for i in range(60):
        body = " ".join(["seoul", *rng.choices(words[: 2 + i % 6], k=20)])
        docs.append(f"# Guide {i}\n\n{body}.\n")
    docs.append("# Hanok\n\nSeoul hanok village with a tea house and a seoul palace view.\n")
    return docs


async def test_bounded_search_agrees_with_fts5(tmp_path: Path) -> None:
    store = await SqliteDocumentStore.open(tmp_path / "p.sqlite3")
    try:
        await store_prepared(
            store, [prepare_text(t, source=f"{i}") for i, t in enumerate(_corpus())]
        )
        for query in ("seoul hanok palace", "tea house in seoul", "temple bridge seoul"):
            store.postings_budget = 10**9  # exhaustive: FTS5 ranks alone
            exact = await store.search(query, top_k=3)
            store.postings_budget = 1  # only the rarest term selects; all terms rescore
            bounded = await store.search(query, top_k=3)
            assert exact[0].id == bounded[0].id, query
            for hit in bounded:  # Python's BM25 and FTS5's bm25() give the same score
                same = [e for e in exact if e.id == hit.id]
                if same:
                    assert abs(same[0].score - hit.score) < 1e-6 * max(1.0, hit.score)
    finally:
        await store.close()


async def test_rerank_with_stored_terms_equals_analysis(tmp_path: Path) -> None:
    store = await SqliteDocumentStore.open(tmp_path / "r.sqlite3", rerank=True)
    try:
        await store_prepared(
            store, [prepare_text(t, source=f"{i}") for i, t in enumerate(_corpus())]
        )
        query = "seoul palace tea house"
        hits = await store.search(query, top_k=5)
        terms = list(dict.fromkeys(analyze(query)))
        again = finalize(terms, hits, top_k=5, min_score=0.0, use_rerank=True)
        stored = finalize(
            terms,
            hits,
            top_k=5,
            min_score=0.0,
            use_rerank=True,
            chunk_terms=[hit_terms(h) for h in hits],
        )
        assert [h.id for h in again] == [h.id for h in stored]
        assert hits[0].title == "Hanok"
    finally:
        await store.close()
