"""VectorIndex on SQLite with the sqlite-vec extension, in the document store's own file.

Python's built-in sqlite3 cannot load extensions in every build (this project's Python has no
`enable_load_extension`), so the index opens the same file with `apsw`, whose SQLite loads
them, and loads sqlite-vec from its registry package (`sqlite_vec.loadable_path()`). WAL lets
this connection and the store's two run side by side.

Tables (versioned by `rag_vector_schema_version`, migrations appended, never edited):
- rag_vector_keys: one row per (chunk id, model) with the document id and the dimension; its
  rowid is the vector's rowid.
- rag_vec_<dimension>: a vec0 table per dimension (cosine distance) with the model as a
  metadata column, so a k-nearest search filters on the model inside sqlite-vec.
Search: vec0's own k-nearest scan is exact but slow (~70-1,300 ms at 100,000 vectors of 384
floats on the 2-core benchmark machine, by load; its int8 and bit columns were no faster there
and lose recall, docs/benchmarks.md). So the index keeps the model's vectors in memory
(`_Matrix` holding an `exact.VectorMatrix`: float32 rows, 1.5 KB per chunk at 384 dimensions,
and their int8 copy, 0.4 KB) and searches the int8 copy with SIMD, then rescores the few
candidates in float32: exact, the same ranking, ~2 ms and ~2 ms of CPU at 100,000 (numpy's
float32 product: 3-4 ms and 7-8 ms of CPU on a quiet machine, 10-12 ms under load;
docs/benchmarks.md `semantic-speed`). The matrix is loaded on the
first search and kept fresh: this connection's own writes mark it, and `PRAGMA data_version`
shows another connection's (a `tokenrelay ingest` in another process); then the rows added
since are appended, or, when rows went away, the matrix is loaded again.
"""

from __future__ import annotations

import asyncio
import json
from array import array
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from tokenrelay.errors import BackendUnavailable, misconfigured
from tokenrelay.retrieval.base import SearchHit
from tokenrelay.retrieval.embedding import EMBEDDINGS_DOWN, Vector
from tokenrelay.retrieval.exact import VectorMatrix
from tokenrelay.retrieval.vectors import Pending

T = TypeVar("T")
Conn = Any  # apsw.Connection (apsw ships no stubs that mypy reads here)
Row = tuple[Any, ...]
_BATCH = 500


def _v1(conn: Conn) -> None:
    conn.execute(
        """
        CREATE TABLE IF NOT EXISTS rag_vector_keys (
            rowid INTEGER PRIMARY KEY,
            chunk_id TEXT NOT NULL,
            document_id TEXT NOT NULL,
            model TEXT NOT NULL,
            dim INTEGER NOT NULL,
            UNIQUE (chunk_id, model)
        );
        CREATE INDEX IF NOT EXISTS rag_vector_keys_model ON rag_vector_keys (model);
        """
    )


def _v2(conn: Conn) -> None:
    """A counter of deletions, so an in-memory matrix knows when to load again (rowids can
    be reused after a delete, which appending new rows would miss)."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS rag_vector_deletions (n INTEGER NOT NULL);"
        "INSERT INTO rag_vector_deletions (n) VALUES (0);"
    )


MIGRATIONS: tuple[Callable[[Conn], None], ...] = (_v1, _v2)


def _migrate(conn: Conn) -> int:
    with conn:
        conn.execute("CREATE TABLE IF NOT EXISTS rag_vector_schema_version (version INTEGER)")
        row = conn.execute("SELECT version FROM rag_vector_schema_version").fetchone()
        version = int(row[0]) if row else 0
        if row is None:
            conn.execute("INSERT INTO rag_vector_schema_version (version) VALUES (0)")
        for step in MIGRATIONS[version:]:
            step(conn)
            version += 1
            conn.execute("UPDATE rag_vector_schema_version SET version = ?", (version,))
    return version


def _table(dim: int) -> str:
    return f"rag_vec_{int(dim)}"


def _blob(vector: Vector) -> bytes:
    return array("f", vector).tobytes()


def _ensure_table(conn: Conn, dim: int) -> None:
    conn.execute(
        f"CREATE VIRTUAL TABLE IF NOT EXISTS {_table(dim)} USING vec0("
        f"embedding float[{int(dim)}] distance_metric=cosine, model text)"
    )


def _delete_keys(conn: Conn, rows: list[tuple[int, int]]) -> None:
    """Delete (rowid, dim) key rows and their vectors."""
    by_dim: dict[int, list[int]] = {}
    for rowid, dim in rows:
        by_dim.setdefault(dim, []).append(rowid)
    for dim, rowids in by_dim.items():
        conn.executemany(f"DELETE FROM {_table(dim)} WHERE rowid = ?", [(r,) for r in rowids])
    conn.executemany("DELETE FROM rag_vector_keys WHERE rowid = ?", [(r,) for r, _ in rows])
    if rows:
        conn.execute("UPDATE rag_vector_deletions SET n = n + 1")


_ROWS_SQL = """
    SELECT k.rowid, k.chunk_id, c.document_id, c.heading, c.text, d.title, d.source, d.metadata
    FROM rag_vector_keys k
    JOIN rag_chunks c ON c.id = k.chunk_id
    JOIN rag_documents d ON d.id = c.document_id
    WHERE k.rowid IN ({marks})
"""


class _Matrix:
    """One model's vectors in memory (`exact.VectorMatrix`): rowids, float32 rows, int8 copy."""

    def __init__(self, model: str, dim: int) -> None:
        self.model = model
        self.dim = dim
        self.rows = VectorMatrix.empty(dim)
        self.signature = (-1, 0, 0)  # (deletions, rows, max rowid) of rag_vector_keys

    def _read(self, conn: Conn, after: int) -> tuple[Any, Any]:
        rows = conn.execute(
            f"SELECT k.rowid, v.embedding FROM rag_vector_keys k JOIN {_table(self.dim)} v"
            " ON v.rowid = k.rowid WHERE k.model = ? AND k.dim = ? AND k.rowid > ?"
            " ORDER BY k.rowid",
            (self.model, self.dim, after),
        ).fetchall()
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        vectors = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32)
        return ids, vectors.reshape(len(rows), self.dim)

    def refresh(self, conn: Conn) -> None:
        """Catch up with the table: append the new rows, or load all when rows went away."""
        row = conn.execute(
            "SELECT (SELECT n FROM rag_vector_deletions), COUNT(*), COALESCE(MAX(rowid), 0)"
            " FROM rag_vector_keys WHERE model = ? AND dim = ?",
            (self.model, self.dim),
        ).fetchone()
        signature = (int(row[0]), int(row[1]), int(row[2]))
        if signature == self.signature:
            return
        same_rows = signature[0] == self.signature[0]
        ids, vectors = self._read(conn, self.signature[2]) if same_rows else ((), ())
        if same_rows and len(self.rows) + len(ids) == signature[1]:
            self.rows = self.rows.appended(ids, vectors)
        else:
            self.rows = VectorMatrix.of(*self._read(conn, 0))
        self.signature = signature

    def nearest(self, vector: Vector, k: int) -> list[tuple[int, float]]:
        """(rowid, cosine similarity) of the `k` nearest rows, best first."""
        return self.rows.nearest(vector, k)


class SqliteVectorIndex:
    """sqlite-vec tables in the store's SQLite file, used from one worker thread."""

    exact = True

    def __init__(self, executor: ThreadPoolExecutor, conn: Conn) -> None:
        self._executor = executor
        self._conn = conn
        self._dims: set[int] = set()
        self._matrices: dict[tuple[str, int], _Matrix] = {}
        self._data_version = -1  # PRAGMA data_version when the matrices were last checked
        self._wrote = False  # this connection wrote since then (data_version misses those)

    @classmethod
    async def open(cls, path: Path | str) -> SqliteVectorIndex:
        try:
            import apsw
            import sqlite_vec
        except ImportError as e:
            raise misconfigured(
                BackendUnavailable,
                EMBEDDINGS_DOWN,
                "vector search on SQLite needs the apsw and sqlite-vec packages: pip install"
                " 'tokenrelay[vectors]', or set TOKENRELAY_EMBEDDING_PROVIDER=none for lexical"
                " retrieval only",
            ) from e
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rag-sqlite-vec")

        def connect() -> Conn:
            conn = apsw.Connection(str(path))
            conn.enable_load_extension(True)
            conn.load_extension(sqlite_vec.loadable_path())
            conn.enable_load_extension(False)
            conn.execute("PRAGMA busy_timeout = 5000")
            conn.execute("PRAGMA journal_mode = WAL")
            _migrate(conn)
            return conn

        try:
            conn = await asyncio.get_running_loop().run_in_executor(executor, connect)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        index = cls(executor, conn)
        index._dims = set(
            await index._run(
                lambda c: [int(r[0]) for r in c.execute("SELECT DISTINCT dim FROM rag_vector_keys")]
            )
        )
        return index

    async def _run(self, fn: Callable[[Conn], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, self._conn)

    async def has(self, chunk_ids: Sequence[str], model: str) -> set[str]:
        ids = list(chunk_ids)

        def look(conn: Conn) -> set[str]:
            found: set[str] = set()
            for i in range(0, len(ids), _BATCH):
                part = ids[i : i + _BATCH]
                marks = ",".join("?" * len(part))
                found.update(
                    r[0]
                    for r in conn.execute(
                        f"SELECT chunk_id FROM rag_vector_keys WHERE model = ?"
                        f" AND chunk_id IN ({marks})",
                        (model, *part),
                    )
                )
            return found

        return await self._run(look)

    async def put(
        self, model: str, dimension: int, rows: Sequence[tuple[str, str, Vector]]
    ) -> None:
        if not rows:
            return
        items = list(rows)

        def write(conn: Conn) -> None:
            with conn:
                _ensure_table(conn, dimension)
                for chunk_id, document_id, vector in items:
                    old = conn.execute(
                        "SELECT rowid, dim FROM rag_vector_keys WHERE chunk_id = ? AND model = ?",
                        (chunk_id, model),
                    ).fetchall()
                    if old:
                        _delete_keys(conn, [(int(r[0]), int(r[1])) for r in old])
                    conn.execute(
                        "INSERT INTO rag_vector_keys (chunk_id, document_id, model, dim)"
                        " VALUES (?, ?, ?, ?)",
                        (chunk_id, document_id, model, dimension),
                    )
                    rowid = conn.last_insert_rowid()
                    conn.execute(
                        f"INSERT INTO {_table(dimension)} (rowid, embedding, model)"
                        " VALUES (?, ?, ?)",
                        (rowid, _blob(vector), model),
                    )
            self._wrote = True

        await self._run(write)
        self._dims.add(dimension)

    async def remove_orphans(self, document_ids: Sequence[str]) -> int:
        ids = list(dict.fromkeys(document_ids))
        if not ids:
            return 0

        def delete(conn: Conn) -> int:
            removed = 0
            with conn:
                for i in range(0, len(ids), _BATCH):
                    part = ids[i : i + _BATCH]
                    marks = ",".join("?" * len(part))
                    rows = conn.execute(
                        f"SELECT k.rowid, k.dim FROM rag_vector_keys k WHERE k.document_id IN"
                        f" ({marks}) AND NOT EXISTS"
                        " (SELECT 1 FROM rag_chunks c WHERE c.id = k.chunk_id)",
                        part,
                    ).fetchall()
                    _delete_keys(conn, [(int(r[0]), int(r[1])) for r in rows])
                    removed += len(rows)
            self._wrote = True
            return removed

        return await self._run(delete)

    async def remove_other_models(self, model: str) -> int:
        def delete(conn: Conn) -> int:
            with conn:
                rows = conn.execute(
                    "SELECT rowid, dim FROM rag_vector_keys WHERE model != ?", (model,)
                ).fetchall()
                _delete_keys(conn, [(int(r[0]), int(r[1])) for r in rows])
            self._wrote = True
            return len(rows)

        return await self._run(delete)

    def _matrix(self, conn: Conn, model: str, dim: int) -> _Matrix:
        """The model's matrix, caught up with every write (runs on the index's thread)."""
        version = int(conn.execute("PRAGMA data_version").fetchone()[0])
        matrix = self._matrices.get((model, dim))
        if matrix is None:
            matrix = self._matrices[(model, dim)] = _Matrix(model, dim)
            matrix.refresh(conn)
        elif self._wrote or version != self._data_version:
            for each in self._matrices.values():
                each.refresh(conn)
            self._wrote = False
        self._data_version = version
        return matrix

    async def search(self, vector: Vector, model: str, k: int) -> list[SearchHit]:
        dim = len(vector)
        if k <= 0 or dim not in self._dims:
            return []

        def find(conn: Conn) -> list[tuple[float, Row]]:
            nearest = self._matrix(conn, model, dim).nearest(vector, k)
            if not nearest:
                return []
            sql = _ROWS_SQL.format(marks=",".join("?" * len(nearest)))
            rows = {int(r[0]): r for r in conn.execute(sql, [rowid for rowid, _ in nearest])}
            return [(score, rows[rowid]) for rowid, score in nearest if rowid in rows]

        found = await self._run(find)
        return [
            SearchHit(
                id=r[1],
                document_id=r[2],
                title=r[5],
                snippet="",
                score=score,
                metadata={**json.loads(r[7]), "source": r[6], "heading": r[3]},
                text=r[4],
                heading=r[3],
            )
            for score, r in found
        ]

    async def pending(self, model: str, limit: int) -> list[Pending]:
        rows = await self._run(
            lambda conn: conn.execute(
                "SELECT c.id, c.document_id, d.title, c.heading, c.text FROM rag_chunks c"
                " JOIN rag_documents d ON d.id = c.document_id WHERE NOT EXISTS"
                " (SELECT 1 FROM rag_vector_keys k WHERE k.chunk_id = c.id AND k.model = ?)"
                " ORDER BY c.seq LIMIT ?",
                (model, limit),
            ).fetchall()
        )
        return [Pending(*r) for r in rows]

    async def count(self, model: str) -> tuple[int, int]:
        row = await self._run(
            lambda conn: conn.execute(
                "SELECT (SELECT COUNT(*) FROM rag_vector_keys WHERE model = ?),"
                " (SELECT COUNT(*) FROM rag_chunks)",
                (model,),
            ).fetchone()
        )
        return int(row[0]), int(row[1])

    async def close(self) -> None:
        try:
            await self._run(lambda conn: conn.close())
        finally:
            self._executor.shutdown(wait=False)
