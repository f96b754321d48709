"""Reciprocal rank fusion of the lexical and the vector rankings. Pure.

BM25 scores and cosine similarities live on different scales, so they are not added: each
list contributes 1 / (k + rank) for every chunk it holds (Cormack et al., 2009), and a chunk
found by both gets both shares. k = 60 is the customary constant; it keeps the first few ranks
of either list from dominating. The fused hits keep each retriever's rank and score.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from tokenrelay.retrieval.base import SearchHit

RRF_K = 60


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


def reciprocal_rank_fusion(
    lexical: Sequence[SearchHit], vector: Sequence[SearchHit], k: int = RRF_K
) -> list[SearchHit]:
    """One list, best first by the summed 1/(k + rank); ties keep the lexical order first."""
    fused: dict[str, SearchHit] = {}
    scores: dict[str, float] = {}
    for hit in with_ranks(lexical, lexical=True):
        fused[hit.id] = hit
        scores[hit.id] = 1.0 / (k + (hit.lexical_rank or 0))
    for hit in with_ranks(vector, lexical=False):
        share = 1.0 / (k + (hit.vector_rank or 0))
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
