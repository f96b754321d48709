"""Fusing the lexical and the vector rankings into one list. Pure.

BM25 scores and cosine similarities live on different scales, so the default rules fuse ranks:
- reciprocal rank fusion (Cormack et al., 2009): each list gives 1 / (k + rank) to every
  chunk it holds, times that list's weight, and a chunk found by both gets both shares;
- the lexical gate: before fusing, a lexical hit counts only if its text holds at least
  `min_coverage` of the question's distinct terms. BM25 always returns *something* for a
  question that shares one common word with the corpus; a passage that holds few of the
  question's terms is weak evidence, and fused at full weight it pushes the semantic hits
  down (measured in docs/benchmarks.md, `semantic-fusion`).
- a convex combination of normalised scores (BM25 / the list's best BM25, cosine min-max
  over the list), kept for the comparison in bench/semantic_fusion.py.
The rule in use is `FusionRule` (settings: rag_fusion_*); every fused hit keeps each
retriever's rank and score.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Literal

from tokenrelay.retrieval.analysis import analyze
from tokenrelay.retrieval.base import SearchHit

RRF_K = 60


@dataclass(frozen=True)
class FusionRule:
    """How hybrid search fuses; the defaults are the rule chosen by measurement."""

    kind: Literal["rrf", "convex"] = "rrf"
    k: int = RRF_K
    lexical_weight: float = 1.0
    vector_weight: float = 1.0
    min_coverage: float = 0.0  # lexical gate: share of the question's terms a hit must hold
    alpha: float = 0.5  # convex: the vector side's weight

    def label(self) -> str:
        if self.kind == "convex":
            base = f"convex alpha={self.alpha:g}"
        elif self.lexical_weight == self.vector_weight:
            base = f"RRF k={self.k}"
        else:
            base = f"RRF k={self.k} w_lex={self.lexical_weight:g} w_vec={self.vector_weight:g}"
        return f"{base}, gate {self.min_coverage:g}" if self.min_coverage else base


def with_ranks(hits: Sequence[SearchHit], *, lexical: bool) -> list[SearchHit]:
    """One retriever's list, each hit marked with its rank and score in that list."""
    if lexical:
        return [
            dataclasses.replace(h, lexical_rank=i, lexical_score=h.score)
            for i, h in enumerate(hits, 1)
        ]
    return [
        dataclasses.replace(h, vector_rank=i, vector_score=h.score) for i, h in enumerate(hits, 1)
    ]


def coverage(terms: Collection[str], hit: SearchHit) -> float:
    """The share of `terms` (the question's distinct terms) that the hit's heading+text holds."""
    if not terms:
        return 0.0
    held = set(analyze(f"{hit.heading}\n{hit.text}"))
    return sum(1 for t in terms if t in held) / len(terms)


def gated(
    lexical: Sequence[SearchHit], terms: Collection[str], min_coverage: float
) -> list[SearchHit]:
    """The lexical hits that hold at least `min_coverage` of the question's terms, in order."""
    if min_coverage <= 0:
        return list(lexical)
    return [h for h in lexical if coverage(terms, h) >= min_coverage]


def _merge(
    lexical: Sequence[SearchHit],
    vector: Sequence[SearchHit],
    lexical_share: Sequence[float],
    vector_share: Sequence[float],
) -> list[SearchHit]:
    fused: dict[str, SearchHit] = {}
    scores: dict[str, float] = {}
    for hit, share in zip(with_ranks(lexical, lexical=True), lexical_share, strict=True):
        fused[hit.id] = hit
        scores[hit.id] = share
    for hit, share in zip(with_ranks(vector, lexical=False), vector_share, strict=True):
        known = fused.get(hit.id)
        if known is None:
            fused[hit.id] = hit
            scores[hit.id] = share
        else:
            fused[hit.id] = dataclasses.replace(
                known, vector_rank=hit.vector_rank, vector_score=hit.vector_score
            )
            scores[hit.id] += share
    order = sorted(fused, key=lambda i: scores[i], reverse=True)  # stable: lexical first on ties
    return [dataclasses.replace(fused[i], score=scores[i]) for i in order]


def reciprocal_rank_fusion(
    lexical: Sequence[SearchHit],
    vector: Sequence[SearchHit],
    k: int = RRF_K,
    *,
    lexical_weight: float = 1.0,
    vector_weight: float = 1.0,
) -> list[SearchHit]:
    """One list, best first by the summed weight / (k + rank); ties keep the lexical order."""
    return _merge(
        lexical,
        vector,
        [lexical_weight / (k + i) for i in range(1, len(lexical) + 1)],
        [vector_weight / (k + i) for i in range(1, len(vector) + 1)],
    )


def convex_fusion(
    lexical: Sequence[SearchHit], vector: Sequence[SearchHit], alpha: float
) -> list[SearchHit]:
    """alpha * (cosine min-max over the list) + (1 - alpha) * (BM25 / the list's best)."""
    top = max((h.score for h in lexical), default=0.0)
    lo = min((h.score for h in vector), default=0.0)
    hi = max((h.score for h in vector), default=0.0)
    span = hi - lo
    return _merge(
        lexical,
        vector,
        [(1 - alpha) * (h.score / top if top > 0 else 0.0) for h in lexical],
        [alpha * ((h.score - lo) / span if span > 0 else 1.0) for h in vector],
    )


def fuse(
    lexical: Sequence[SearchHit],
    vector: Sequence[SearchHit],
    terms: Collection[str],
    rule: FusionRule = FusionRule(),
) -> list[SearchHit]:
    """The two rankings fused by `rule`; `terms` are the question's (for the lexical gate)."""
    kept = gated(lexical, terms, rule.min_coverage)
    if rule.kind == "convex":
        return convex_fusion(kept, vector, rule.alpha)
    return reciprocal_rank_fusion(
        kept,
        vector,
        rule.k,
        lexical_weight=rule.lexical_weight,
        vector_weight=rule.vector_weight,
    )
