"""Second-stage ranking of the BM25 candidates, and the steps every store shares after it. Pure.

BM25 scores each query term on its own: a chunk that repeats one rare term can beat a chunk
that contains all the terms side by side. The rerank looks at the candidates' text again and
multiplies the BM25 score by

- coverage: the share of the query's terms that the chunk (heading included) contains, and
- proximity: how tightly the matched terms sit together (the shortest window holding all of
  the chunk's distinct matched terms, compared with the number of those terms).

It only reorders the top candidates (3 x top_k, at least 10), so it costs a few
hundred microseconds, and it keeps BM25's scale, so `min_score` means the same thing with and
without it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from tokenrelay.retrieval.analysis import analyze, heading_terms
from tokenrelay.retrieval.base import SearchHit
from tokenrelay.retrieval.snippets import make_snippet

COVERAGE_WEIGHT = 0.6
PROXIMITY_WEIGHT = 0.3


def candidate_count(top_k: int) -> int:
    """How many BM25 candidates a store fetches for the rerank stage."""
    return max(10, 3 * top_k)


def _shortest_window(positions: dict[str, list[int]]) -> int:
    """Length of the shortest span of term positions that contains every term in `positions`."""
    events = sorted((pos, term) for term, plist in positions.items() for pos in plist)
    need = len(positions)
    counts: dict[str, int] = {}
    best = len(events) + 10**6
    left = 0
    for pos, term in events:
        counts[term] = counts.get(term, 0) + 1
        while len(counts) == need:
            left_pos, left_term = events[left]
            best = min(best, pos - left_pos + 1)
            counts[left_term] -= 1
            if not counts[left_term]:
                del counts[left_term]
            left += 1
    return best


def rerank_factor(query: Sequence[str], chunk_terms: Sequence[str]) -> float:
    """A multiplier in (0, 1 + PROXIMITY_WEIGHT] for one candidate."""
    wanted = set(query)
    if not wanted:
        return 1.0
    positions: dict[str, list[int]] = {}
    for i, term in enumerate(chunk_terms):
        if term in wanted:
            positions.setdefault(term, []).append(i)
    matched = len(positions)
    coverage = matched / len(wanted)
    proximity = 0.0
    if matched >= 2:
        window = _shortest_window(positions)
        proximity = min(1.0, matched / window) if window > 0 else 0.0
    return (1.0 - COVERAGE_WEIGHT + COVERAGE_WEIGHT * coverage) * (
        1.0 + PROXIMITY_WEIGHT * proximity
    )


def hit_terms(hit: SearchHit) -> tuple[str, ...]:
    """A candidate's terms in order (heading, then text), as the rerank reads them."""
    return heading_terms(hit.heading) + tuple(analyze(hit.text))


def rerank(
    query: Sequence[str],
    hits: Sequence[SearchHit],
    chunk_terms: Sequence[Sequence[str]] | None = None,
) -> list[SearchHit]:
    """`hits` reordered by BM25 x coverage x proximity (scores replaced).

    `chunk_terms[i]` are the terms of `hits[i]` (`hit_terms`) when the store already has them
    (both stores keep the analysed body next to the text); otherwise the text is analysed here.
    """
    terms = chunk_terms if chunk_terms is not None else [hit_terms(h) for h in hits]
    scored = [
        dataclasses.replace(hit, score=hit.score * rerank_factor(query, t))
        for hit, t in zip(hits, terms, strict=True)
    ]
    return sorted(scored, key=lambda h: h.score, reverse=True)


def finalize(
    query: Sequence[str],
    candidates: Sequence[SearchHit],
    *,
    top_k: int,
    min_score: float,
    use_rerank: bool,
    chunk_terms: Sequence[Sequence[str]] | None = None,
) -> list[SearchHit]:
    """Rerank (optional), drop weak hits, keep top_k, fill in snippets."""
    ranked = (
        rerank(query, candidates, chunk_terms)
        if use_rerank
        else sorted(candidates, key=lambda h: h.score, reverse=True)
    )
    kept = [hit for hit in ranked if hit.score >= min_score][:top_k]
    terms = set(query)
    return [dataclasses.replace(hit, snippet=make_snippet(hit.text, terms)) for hit in kept]
