"""Okapi BM25 for one chunk, the way SQLite FTS5's bm25() computes it. Pure.

Used by the PostgreSQL store (PostgreSQL has no BM25) so that both stores rank alike:
idf = ln((N - n + 0.5) / (n + 0.5)) floored at 1e-6; the term frequency is the column-weighted
sum (head x 2, body x 1); the length is the chunk's number of terms over all columns.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence

K1 = 1.2
B = 0.75


def idf(n_chunks: int, df: int) -> float:
    return max(1e-6, math.log((n_chunks - df + 0.5) / (df + 0.5)))


def bm25(
    query: Sequence[str],
    head: Sequence[str],
    body: Sequence[str],
    df: Mapping[str, int],
    n_chunks: int,
    avg_len: float,
    *,
    head_weight: float = 2.0,
    body_weight: float = 1.0,
) -> float:
    head_tf = Counter(head)
    body_tf = Counter(body)
    length = len(head) + len(body)
    norm = K1 * (1 - B + B * length / avg_len) if avg_len > 0 else K1
    score = 0.0
    for term in dict.fromkeys(query):
        tf = head_weight * head_tf.get(term, 0) + body_weight * body_tf.get(term, 0)
        if tf:
            score += idf(n_chunks, df.get(term, 0)) * tf * (K1 + 1) / (tf + norm)
    return score
