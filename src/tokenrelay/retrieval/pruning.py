"""Bounded BM25 search: which query terms pick the candidates, which only score them. Pure.

FTS5's bm25() is computed for *every* row that matches the query. A query term that occurs in a
third of 100,000 chunks therefore costs tens of milliseconds, although its idf makes it worth
little. So, from each term's document frequency (df, kept by the SQLite store in `rag_terms`):

- terms in no chunk are left out (they match nothing);
- the rarest terms, while their postings add up to at most `budget`, *select* candidates:
  FTS5 ranks the chunks holding any of them and returns the best `candidates`;
- the remaining frequent terms only *score*: every candidate is rescored with BM25 over all
  the terms (`bm25.py`, the same formula as FTS5's), so a chunk holding the rare terms and the
  frequent ones still wins.

When every term fits the budget the plan is exhaustive and FTS5 ranks alone (exact). Otherwise
a chunk that holds none of the rare terms can be missed; such a chunk scores at most the sum of
the frequent terms' upper bounds, which is small next to a rare term's. bench/retrieval_speed.py
reports how often the bounded top 5 equals the exhaustive one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tokenrelay.retrieval.bm25 import K1, B, idf

POSTINGS_BUDGET = 12_000  # chunks FTS5 may rank per query (a few ms)


@dataclass(frozen=True, slots=True)
class QueryPlan:
    select: tuple[str, ...]  # terms of the MATCH expression
    score_only: tuple[str, ...]  # frequent terms used only when rescoring the candidates

    @property
    def exhaustive(self) -> bool:
        return not self.score_only


def plan_query(
    terms: Sequence[str], df: Mapping[str, int], *, budget: int = POSTINGS_BUDGET
) -> QueryPlan:
    """Split `terms` (in query order) by document frequency; see the module docstring."""
    present = [t for t in terms if df.get(t, 0) > 0]
    if sum(df[t] for t in present) <= budget:
        return QueryPlan(tuple(present), ())
    by_rarity = sorted(present, key=lambda t: df[t])
    select: list[str] = []
    postings = 0
    for term in by_rarity:
        if select and postings + df[term] > budget:
            break
        select.append(term)
        postings += df[term]
    chosen = set(select)
    return QueryPlan(
        tuple(t for t in present if t in chosen), tuple(t for t in present if t not in chosen)
    )


def rescore(
    terms: Sequence[str],
    head: str,
    body: str,
    df: Mapping[str, int],
    n_chunks: int,
    avg_len: float,
    *,
    head_weight: float = 2.0,
    body_weight: float = 1.0,
) -> float:
    """`bm25.bm25` for one candidate given its space-joined FTS columns, without Counters."""
    head_terms = head.split()
    body_terms = body.split()
    length = len(head_terms) + len(body_terms)
    norm = K1 * (1 - B + B * length / avg_len) if avg_len > 0 else K1
    score = 0.0
    for term in terms:
        tf = head_weight * head_terms.count(term) + body_weight * body_terms.count(term)
        if tf:
            score += idf(n_chunks, df.get(term, 0)) * tf * (K1 + 1) / (tf + norm)
    return score
