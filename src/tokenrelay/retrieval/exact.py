"""Exact nearest neighbours over an in-memory matrix of unit rows: the search of the SQLite
index's matrix (`vector_sqlite.py`) and of PostgreSQL's without pgvector (`pg_matrix.py`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def nearest_rows(ids: Any, vectors: Any, query: Sequence[float], k: int) -> list[tuple[int, float]]:
    """(id, cosine similarity) of the `k` rows of `vectors` nearest to `query`, best first;
    `ids[i]` names row i. Rows and the query are unit vectors, so the dot product is the
    cosine. A partial sort picks the k, then only those are ordered."""
    if len(ids) == 0 or k <= 0:
        return []
    scores = vectors @ np.asarray(query, dtype=np.float32)
    k = min(k, len(scores))
    top = np.argpartition(-scores, k - 1)[:k]
    top = top[np.argsort(-scores[top], kind="stable")]
    return [(int(ids[i]), float(scores[i])) for i in top]
