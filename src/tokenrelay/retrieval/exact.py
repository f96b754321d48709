"""Exact nearest neighbours over an in-memory matrix of unit rows: the search of the SQLite
index's matrix (`vector_sqlite.py`) and of PostgreSQL's without pgvector (`pg_matrix.py`).

`VectorMatrix` holds the ids, the float32 rows and an int8 copy of them. A search scans the
int8 copy with numkong's SIMD dot products (AVX2, AVX-512 VNNI, NEON; a quarter of the bytes
that a float32 product reads, which is what bounds it), then scores the few candidates exactly
in float32. Nothing is lost, by construction rather than by tuning:
- the int8 copy is of the rows minus their mean (`center`): the mean adds the same q . center
  to every row's score, so it changes no ranking, and the residuals use the 255 levels for what
  tells rows apart (e5's rows share one direction; quantizing them whole wastes the levels on it);
- each row keeps the length of its rounding error e (residual = s * codes + e) and the query
  its own f (q = t * q_codes + f), so by Cauchy-Schwarz every row's true q . residual lies
  within |e| |q| + |s * codes| |f| of its int8 score s * t * (codes . q_codes). The rows whose
  interval reaches the k-th best lower end are the candidates: no row outside them can be in
  the top k. They are scored in float32 from the float32 rows, and the k best returned.
- when the intervals are too wide to prune (more than `_MAX_CANDIDATES` of the rows), the search
  is the plain float32 product (`nearest_rows`), as it is without numkong or without a SIMD
  kernel for int8 (its portable loop is slower than numpy's float32 product).
The int8 copy costs a quarter of the float32 rows' memory (0.4 KB per chunk at 384
dimensions). Measured in docs/benchmarks.md (`semantic-speed`) and docs/retrieval.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

_LEVELS = 127.0  # int8 codes in -127..127
_QUANTIZE_ROWS = 16_384  # rows quantized at a time (bounds the float32 temporaries)
_MAX_CANDIDATES = 0.125  # share of the rows beyond which the int8 scan does not pay
_SLACK = 1e-4  # float32 rounding in scores and bounds, per unit of |q| (rows of length ~1)


def nearest_rows(ids: Any, vectors: Any, query: Sequence[float], k: int) -> list[tuple[int, float]]:
    """(id, cosine similarity) of the `k` rows of `vectors` nearest to `query`, best first;
    `ids[i]` names row i. Rows and the query are unit vectors, so the dot product is the
    cosine. A partial sort picks the k, then only those are ordered."""
    if len(ids) == 0 or k <= 0:
        return []
    return _best(ids, vectors @ np.asarray(query, dtype=np.float32), None, k)


def _best(ids: Any, scores: Any, rows: Any, k: int) -> list[tuple[int, float]]:
    """The k best of `scores`, best first, as (id, score); `scores[i]` is row `rows[i]`'s
    (row i's when `rows` is None)."""
    ids, k = np.asarray(ids), min(k, len(scores))
    top = np.argpartition(-scores, k - 1)[:k]
    top = top[np.argsort(-scores[top], kind="stable")]
    named = ids[top] if rows is None else ids[rows[top]]
    return [(int(i), float(s)) for i, s in zip(named, scores[top], strict=True)]


def _scan_kernel() -> Any:
    """numkong's module when it has a SIMD int8 dot product on this CPU, else None."""
    try:
        import numkong
    except (ImportError, OSError):  # not installed, or its library does not load here
        return None
    capabilities = numkong.get_capabilities()
    return numkong if any(on for name, on in capabilities.items() if name != "serial") else None


_KERNEL = _scan_kernel()


def scan_available() -> bool:
    """True when searches scan an int8 copy (numkong with a SIMD kernel here)."""
    return _KERNEL is not None


@dataclass(frozen=True)
class Codes:
    """The int8 copy of rows minus `center`: one scale per row (its largest magnitude / 127),
    and per row the length of its rounding error and of its dequantized residual."""

    center: Any
    codes: Any
    scales: Any
    errors: Any
    lengths: Any
    base: int  # rows when the center was taken

    @classmethod
    def of(cls, vectors: Any, center: Any, base: int) -> Codes:
        n = len(vectors)
        codes = np.empty(vectors.shape, dtype=np.int8)
        scales = np.empty(n, dtype=np.float32)
        errors = np.empty(n, dtype=np.float32)
        lengths = np.empty(n, dtype=np.float32)
        for start in range(0, n, _QUANTIZE_ROWS):
            part = slice(start, start + _QUANTIZE_ROWS)
            residual = vectors[part] - center
            scale = np.abs(residual).max(axis=1) / _LEVELS
            scale[scale == 0] = 1.0
            code = np.rint(residual / scale[:, None])
            approx = code * scale[:, None]
            codes[part] = code
            scales[part] = scale
            errors[part] = np.linalg.norm(residual - approx, axis=1)
            lengths[part] = np.linalg.norm(approx, axis=1)
        return cls(center, codes, scales, errors, lengths, base)

    def __add__(self, other: Codes) -> Codes:
        return Codes(
            self.center,
            np.concatenate([self.codes, other.codes]),
            np.concatenate([self.scales, other.scales]),
            np.concatenate([self.errors, other.errors]),
            np.concatenate([self.lengths, other.lengths]),
            self.base,
        )

    def __getitem__(self, keep: Any) -> Codes:
        return Codes(
            self.center,
            self.codes[keep],
            self.scales[keep],
            self.errors[keep],
            self.lengths[keep],
            self.base,
        )

    def candidates(self, q: Any, k: int) -> Any:
        """The rows that can be among the k nearest to `q` (sorted row numbers), or None when
        the int8 bounds leave too many for the scan to pay."""
        assert _KERNEL is not None
        step = float(np.abs(q).max()) / _LEVELS or 1.0
        q_codes = np.rint(q / step).astype(np.int8)
        q_error = float(np.linalg.norm(q - q_codes.astype(np.float32) * step))
        dots = np.asarray(_KERNEL.cdist(q_codes[None, :], self.codes, "dot", out_dtype="float32"))
        scores = dots[0] * self.scales
        scores *= step
        # |q . residual - scores| <= |q . rounding error| + |q's rounding error . dequantized|
        q_norm = float(np.linalg.norm(q))
        bound = self.errors * q_norm
        bound += self.lengths * q_error
        bound += _SLACK * q_norm
        lower = scores - bound
        n = len(lower)
        floor = np.partition(lower, n - k)[n - k]  # the k-th best lower end
        scores += bound
        candidates = np.flatnonzero(scores >= floor)
        if len(candidates) > max(_MAX_CANDIDATES * n, 4 * k):
            return None
        return candidates


def _codes(vectors: Any) -> Codes:
    """The int8 copy of `vectors` around their mean."""
    center = (
        vectors.mean(axis=0, dtype=np.float64).astype(np.float32)
        if len(vectors)
        else np.zeros(vectors.shape[1], dtype=np.float32)
    )
    return Codes.of(vectors, center, len(vectors))


class VectorMatrix:
    """One model's vectors: ids, unit float32 rows and (with numkong) their int8 copy. A value:
    `appended` and `kept` return new matrices, so a search in another thread sees one state."""

    def __init__(self, ids: Any, vectors: Any, codes: Codes | None) -> None:
        self.ids = ids
        self.vectors = vectors
        self.codes = codes

    @classmethod
    def of(cls, ids: Any, vectors: Any, *, scan: bool | None = None) -> VectorMatrix:
        """A matrix of these rows (`vectors`: one row per id, 2-D even when empty); `scan` =
        False keeps no int8 copy (None: keep one when the scan is available)."""
        ids = np.asarray(ids, dtype=np.int64)
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.shape[0] != len(ids) or vectors.ndim != 2:
            raise ValueError(f"{vectors.shape} rows for {len(ids)} ids")
        scan = scan_available() if scan is None else scan and scan_available()
        return cls(ids, vectors, _codes(vectors) if scan else None)

    @classmethod
    def empty(cls, dim: int, *, scan: bool | None = None) -> VectorMatrix:
        return cls.of(np.zeros(0, dtype=np.int64), np.zeros((0, dim), dtype=np.float32), scan=scan)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def appended(self, ids: Any, vectors: Any) -> VectorMatrix:
        """This matrix with rows added at the end. Only the new rows are quantized, around the
        same center; once the rows have doubled since it was taken, all are, around a new one."""
        ids = np.asarray(ids, dtype=np.int64)
        if len(ids) == 0:
            return self
        vectors = np.asarray(vectors, dtype=np.float32).reshape(len(ids), self.dim)
        all_ids = np.concatenate([self.ids, ids])
        all_vectors = np.concatenate([self.vectors, vectors])
        if self.codes is None:
            return VectorMatrix(all_ids, all_vectors, None)
        if len(all_ids) > 2 * max(self.codes.base, 1):
            return VectorMatrix(all_ids, all_vectors, _codes(all_vectors))
        added = Codes.of(vectors, self.codes.center, self.codes.base)
        return VectorMatrix(all_ids, all_vectors, self.codes + added)

    def kept(self, keep: Any) -> VectorMatrix:
        """This matrix with only the rows where the boolean mask `keep` is true."""
        if bool(np.all(keep)):
            return self
        codes = None if self.codes is None else self.codes[keep]
        return VectorMatrix(self.ids[keep], self.vectors[keep], codes)

    def nearest(self, query: Sequence[float], k: int) -> list[tuple[int, float]]:
        """(id, cosine similarity) of the `k` nearest rows, best first: the same as
        `nearest_rows` over the float32 rows (ties aside)."""
        if len(self.ids) == 0 or k <= 0:
            return []
        q: Any = np.asarray(query, dtype=np.float32)
        candidates = None
        if self.codes is not None and k < len(self.ids):
            candidates = self.codes.candidates(q, k)
        if candidates is None:
            return nearest_rows(self.ids, self.vectors, q, k)
        return _best(self.ids, self.vectors[candidates] @ q, candidates, k)
