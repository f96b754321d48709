"""VectorIndex on PostgreSQL: pgvector where the extension is installed, else an exact scan.

One table, `rag_vectors` (versioned by `rag_vector_schema_version`, migrations appended, never
edited), one row per (chunk id, model) with the document id, the dimension, the vector as
`real[]` and an increasing `rid`. With pgvector (`CREATE EXTENSION vector` succeeds or was done
by an administrator) the row also holds `vec vector`, and an HNSW index per dimension answers
nearest-neighbour searches. Without it the search is exact: each process keeps the model's
vectors in memory (`pg_matrix.py`: float32 rows and an int8 copy scanned with SIMD, exact.py;
kept in step through `rag_vector_sets`), and
start-up logs a line naming pgvector; without numpy the question is compared with every vector
in SQL (seconds at 100,000 chunks).
Every write takes one advisory lock and updates `rag_vector_sets` (rows and deletions per model
and dimension) in its transaction, so rids become visible in order and a matrix can catch up.
Vectors are unit length, so the dot product is the cosine similarity.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tokenrelay.retrieval.base import SearchHit
from tokenrelay.retrieval.embedding import Vector
from tokenrelay.retrieval.vectors import Pending

logger = logging.getLogger("tokenrelay.retrieval")
Connection = Any  # asyncpg.Connection
Pool = Any  # asyncpg.Pool


async def _v1(conn: Connection) -> None:
    await conn.execute(
        """
        CREATE TABLE IF NOT EXISTS rag_vectors (
            chunk_id TEXT NOT NULL,
            model TEXT NOT NULL,
            document_id TEXT NOT NULL,
            dim INTEGER NOT NULL,
            embedding REAL[] NOT NULL,
            PRIMARY KEY (chunk_id, model)
        );
        CREATE INDEX IF NOT EXISTS rag_vectors_document ON rag_vectors (document_id);
        CREATE INDEX IF NOT EXISTS rag_vectors_model ON rag_vectors (model, dim);
        """
    )


async def _v2(conn: Connection) -> None:
    """What an in-memory matrix needs (pg_matrix.py): an increasing row id, per-(model,
    dimension) counts to catch up by, and the vector packed as big-endian float32 bytes (read
    by binary COPY without a per-element conversion). Existing rows get all three here."""
    await conn.execute(
        """
        ALTER TABLE rag_vectors ADD COLUMN IF NOT EXISTS rid BIGSERIAL;
        ALTER TABLE rag_vectors ADD COLUMN IF NOT EXISTS packed BYTEA;
        UPDATE rag_vectors SET packed = (
            SELECT string_agg(float4send(x), ''::bytea ORDER BY i)
            FROM unnest(embedding) WITH ORDINALITY AS t(x, i)
        ) WHERE packed IS NULL;
        CREATE UNIQUE INDEX IF NOT EXISTS rag_vectors_rid ON rag_vectors (model, dim, rid);
        CREATE TABLE IF NOT EXISTS rag_vector_sets (
            model TEXT NOT NULL,
            dim INTEGER NOT NULL,
            rows BIGINT NOT NULL,
            deletions BIGINT NOT NULL,
            PRIMARY KEY (model, dim)
        );
        INSERT INTO rag_vector_sets (model, dim, rows, deletions)
            SELECT model, dim, count(*), 0 FROM rag_vectors GROUP BY model, dim
            ON CONFLICT (model, dim) DO NOTHING;
        """
    )


MIGRATIONS: tuple[Callable[[Connection], Awaitable[None]], ...] = (_v1, _v2)
# candidates HNSW keeps while searching; pgvector's default of 40 found 0.76 of the exact top
# 15 at 100,000 e5-like vectors (bench/postgres_speed.py --embedded measures the others)
HNSW_EF_SEARCH = 100
_WRITE_LOCK = 0x7265_7476  # pg_advisory_xact_lock key of every vector write


async def migrate(conn: Connection) -> int:
    async with conn.transaction():
        await conn.execute("CREATE TABLE IF NOT EXISTS rag_vector_schema_version (version INT)")
        await conn.execute("LOCK TABLE rag_vector_schema_version IN EXCLUSIVE MODE")
        row = await conn.fetchrow("SELECT version FROM rag_vector_schema_version")
        version = int(row["version"]) if row else 0
        if row is None:
            await conn.execute("INSERT INTO rag_vector_schema_version (version) VALUES (0)")
        for step in MIGRATIONS[version:]:
            await step(conn)
            version += 1
            await conn.execute("UPDATE rag_vector_schema_version SET version = $1", version)
    return version


async def _enable_pgvector(conn: Connection) -> bool:
    """True when the `vector` type can be used (creating the extension if we may)."""
    installed = await conn.fetchval("SELECT 1 FROM pg_extension WHERE extname = 'vector'")
    if not installed:
        available = await conn.fetchval(
            "SELECT 1 FROM pg_available_extensions WHERE name = 'vector'"
        )
        if not available:
            return False
        try:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS vector WITH SCHEMA public")
        except Exception as e:  # no permission: an administrator must create it
            logger.warning("pgvector is installed but CREATE EXTENSION vector failed: %s", e)
            return False
    await conn.execute("ALTER TABLE rag_vectors ADD COLUMN IF NOT EXISTS vec public.vector")
    return True


def _packed(vector: Vector) -> bytes:
    """The vector as big-endian float32 bytes, as float4send makes them (pg_matrix.py)."""
    return struct.pack(f">{len(vector)}f", *vector)


def _literal(vector: Vector) -> str:
    return "[" + ",".join(repr(float(x)) for x in vector) + "]"


_HIT_COLUMNS = "c.id, c.document_id, c.heading, c.text, d.title, d.source, d.metadata"
_EXACT_SQL = f"""
    SELECT {_HIT_COLUMNS}, s.score FROM (
        SELECT chunk_id, (SELECT sum(a * b) FROM unnest(embedding, $1::real[]) AS t(a, b))
               AS score
        FROM rag_vectors WHERE model = $2 AND dim = $3 ORDER BY score DESC LIMIT $4
    ) AS s
    JOIN rag_chunks c ON c.id = s.chunk_id JOIN rag_documents d ON d.id = c.document_id
    ORDER BY s.score DESC
"""
# `dim = {dim}` is a literal: the HNSW index is partial (WHERE dim = N), and a prepared
# statement's generic plan cannot prove that a parameter matches it (it scanned every row)
_ANN_SQL = """
    SELECT {cols}, s.score FROM (
        SELECT chunk_id, 1 - (vec::public.vector({dim}) OPERATOR(public.<=>)
                              $1::text::public.vector({dim})) AS score
        FROM rag_vectors WHERE model = $2 AND dim = {dim}
        ORDER BY vec::public.vector({dim}) OPERATOR(public.<=>) $1::text::public.vector({dim})
        LIMIT $3
    ) AS s
    JOIN rag_chunks c ON c.id = s.chunk_id JOIN rag_documents d ON d.id = c.document_id
    ORDER BY s.score DESC
"""


_ROWS_SQL = f"""
    SELECT v.rid, {_HIT_COLUMNS} FROM rag_vectors v
    JOIN rag_chunks c ON c.id = v.chunk_id JOIN rag_documents d ON d.id = c.document_id
    WHERE v.model = $2 AND v.dim = $3 AND v.rid = ANY($1::bigint[])
"""


def _import_numpy() -> Any:
    try:
        import numpy
    except ImportError:  # pragma: no cover - depends on the install
        return None
    return numpy


async def _counted(
    conn: Connection, deleted: Sequence[Any], added: dict[tuple[str, int], int]
) -> None:
    """Update rag_vector_sets for the rows deleted (records with model, dim) and added."""
    change: dict[tuple[str, int], list[int]] = {key: [n, 0] for key, n in added.items()}
    for r in deleted:
        entry = change.setdefault((r["model"], int(r["dim"])), [0, 0])
        entry[0] -= 1
        entry[1] += 1
    if not change:
        return
    keys = sorted(change)
    await conn.execute(
        "INSERT INTO rag_vector_sets (model, dim, rows, deletions)"
        " SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[], $4::bigint[])"
        " ON CONFLICT (model, dim) DO UPDATE SET rows = rag_vector_sets.rows + excluded.rows,"
        " deletions = rag_vector_sets.deletions + excluded.deletions",
        [m for m, _ in keys],
        [d for _, d in keys],
        [change[k][0] for k in keys],
        [change[k][1] for k in keys],
    )


class PostgresVectorIndex:
    def __init__(self, pool: Pool, *, pgvector: bool, in_memory: bool = True) -> None:
        self._pool = pool
        self.pgvector = pgvector
        self._indexed: set[int] = set()
        self._numpy = None if pgvector or not in_memory else _import_numpy()
        self._matrices: dict[tuple[str, int], Any] = {}  # (model, dim) -> pg_matrix.Matrix
        self.ef_search = HNSW_EF_SEARCH
        self._executor: ThreadPoolExecutor | None = None

    @property
    def exact(self) -> bool:
        return not self.pgvector

    @property
    def in_memory(self) -> bool:
        """True when the exact search runs on an in-process matrix (numpy), not in SQL."""
        return self._numpy is not None

    @classmethod
    async def open(
        cls, pool: Pool, *, schema: str = "public", use_pgvector: bool = True
    ) -> PostgresVectorIndex:
        async with pool.acquire() as conn:
            await migrate(conn)
            pgvector = use_pgvector and await _enable_pgvector(conn)
        index = cls(pool, pgvector=pgvector)
        if not pgvector:
            how = (
                "holds every vector in this process's memory (about 1.9 KB per chunk at 384"
                " dimensions: float32 and an int8 copy) and compares the question with all"
                " of them"
                if index.in_memory
                else "compares the question with every vector in SQL (install numpy: seconds"
                " at 100,000 chunks)"
            )
            logger.warning(
                "vector search on PostgreSQL is an exact scan that %s: install pgvector"
                " (Debian: postgresql-15-pgvector) and restart for an HNSW index",
                how,
            )
        return index

    async def build_ann_index(self, dim: int) -> None:
        """Create the HNSW index of `dim` now (after loading many vectors in bulk, one build is
        faster than inserting into the index row by row); the first `put` does it otherwise."""
        async with self._pool.acquire() as conn:
            await self._ensure_ann_index(conn, dim)

    async def _ensure_ann_index(self, conn: Connection, dim: int) -> None:
        if not self.pgvector or dim in self._indexed:
            return
        await conn.execute(
            f"CREATE INDEX IF NOT EXISTS rag_vectors_hnsw_{int(dim)} ON rag_vectors USING hnsw"
            f" ((vec::public.vector({int(dim)})) public.vector_cosine_ops) WHERE dim = {int(dim)}"
        )
        self._indexed.add(dim)

    async def has(self, chunk_ids: Sequence[str], model: str) -> set[str]:
        rows = await self._pool.fetch(
            "SELECT chunk_id FROM rag_vectors WHERE model = $1 AND chunk_id = ANY($2::text[])",
            model,
            list(chunk_ids),
        )
        return {r["chunk_id"] for r in rows}

    async def put(
        self, model: str, dimension: int, rows: Sequence[tuple[str, str, Vector]]
    ) -> None:
        if not rows:
            return
        ids = [r[0] for r in rows]
        docs = [r[1] for r in rows]
        vectors = [r[2] for r in rows]
        async with self._pool.acquire() as conn:
            await self._ensure_ann_index(conn, dimension)
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", _WRITE_LOCK)
                deleted = await conn.fetch(
                    "DELETE FROM rag_vectors WHERE model = $1 AND chunk_id = ANY($2::text[])"
                    " RETURNING model, dim",
                    model,
                    ids,
                )
                if self.pgvector:
                    await conn.executemany(
                        "INSERT INTO rag_vectors (chunk_id, model, document_id, dim, embedding,"
                        " packed, vec) VALUES ($1, $2, $3, $4, $5::real[], $6,"
                        " $7::text::public.vector)",
                        [
                            (c, model, d, dimension, v, _packed(v), _literal(v))
                            for c, d, v in zip(ids, docs, vectors, strict=True)
                        ],
                    )
                else:
                    await conn.executemany(
                        "INSERT INTO rag_vectors (chunk_id, model, document_id, dim, embedding,"
                        " packed) VALUES ($1, $2, $3, $4, $5::real[], $6)",
                        [
                            (c, model, d, dimension, v, _packed(v))
                            for c, d, v in zip(ids, docs, vectors, strict=True)
                        ],
                    )
                await _counted(conn, deleted, {(model, dimension): len(rows)})

    async def _delete(self, sql: str, *args: Any) -> int:
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _WRITE_LOCK)
            deleted = await conn.fetch(sql, *args)
            await _counted(conn, deleted, {})
        return len(deleted)

    async def remove_orphans(self, document_ids: Sequence[str]) -> int:
        if not document_ids:
            return 0
        return await self._delete(
            "DELETE FROM rag_vectors v WHERE v.document_id = ANY($1::text[])"
            " AND NOT EXISTS (SELECT 1 FROM rag_chunks c WHERE c.id = v.chunk_id)"
            " RETURNING model, dim",
            list(document_ids),
        )

    async def remove_other_models(self, model: str) -> int:
        return await self._delete(
            "DELETE FROM rag_vectors WHERE model != $1 RETURNING model, dim", model
        )

    async def search(self, vector: Vector, model: str, k: int) -> list[SearchHit]:
        dim = len(vector)
        if k <= 0:
            return []
        if self.pgvector:
            sql = _ANN_SQL.format(cols=_HIT_COLUMNS, dim=int(dim))
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.execute(f"SET LOCAL hnsw.ef_search = {max(int(self.ef_search), k)}")
                rows = await conn.fetch(sql, _literal(vector), model, k)
            scored = [(float(r["score"]), r) for r in rows]
        elif self._numpy is not None:
            scored = await self._search_matrix(vector, model, k)
        else:
            rows = await self._pool.fetch(_EXACT_SQL, vector, model, dim, k)
            scored = [(float(r["score"]), r) for r in rows]
        return [
            SearchHit(
                id=r["id"],
                document_id=r["document_id"],
                title=r["title"],
                snippet="",
                score=score,
                metadata={**(r["metadata"] or {}), "source": r["source"], "heading": r["heading"]},
                text=r["text"],
                heading=r["heading"],
            )
            for score, r in scored
        ]

    async def _search_matrix(self, vector: Vector, model: str, k: int) -> list[tuple[float, Any]]:
        """The matrix of (model, dim), caught up, searched off the event loop; the rows read
        for the winners (a vector whose chunk is gone is skipped, as the SQL join would)."""
        from tokenrelay.retrieval.pg_matrix import Matrix

        dim = len(vector)
        matrix = self._matrices.get((model, dim))
        if matrix is None:
            matrix = self._matrices[(model, dim)] = Matrix(model, dim)
        loop = asyncio.get_running_loop()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rag-pg-matrix")
        async with matrix.lock, self._pool.acquire() as conn:
            await matrix.refresh(conn)
        # no connection is held while the product runs
        # twice k: a vector whose chunk was just deleted (not yet removed) is skipped
        nearest = await loop.run_in_executor(self._executor, matrix.nearest, vector, 2 * k)
        if not nearest:
            return []
        rows = await self._pool.fetch(_ROWS_SQL, [rid for rid, _ in nearest], model, dim)
        by_rid = {r["rid"]: r for r in rows}
        return [(score, by_rid[rid]) for rid, score in nearest if rid in by_rid][:k]

    async def pending(self, model: str, limit: int) -> list[Pending]:
        rows = await self._pool.fetch(
            "SELECT c.id, c.document_id, d.title, c.heading, c.text FROM rag_chunks c"
            " JOIN rag_documents d ON d.id = c.document_id WHERE NOT EXISTS"
            " (SELECT 1 FROM rag_vectors v WHERE v.chunk_id = c.id AND v.model = $1)"
            " ORDER BY c.seq LIMIT $2",
            model,
            limit,
        )
        return [Pending(*r) for r in rows]

    async def count(self, model: str) -> tuple[int, int]:
        row = await self._pool.fetchrow(
            "SELECT (SELECT COUNT(*) FROM rag_vectors WHERE model = $1) AS have,"
            " (SELECT COUNT(*) FROM rag_chunks) AS total",
            model,
        )
        return int(row["have"]), int(row["total"])

    async def close(self) -> None:
        """The pool is the document store's; it closes it."""
        if self._executor is not None:
            self._executor.shutdown(wait=False)
