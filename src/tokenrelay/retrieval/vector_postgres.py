"""VectorIndex on PostgreSQL: pgvector where the extension is installed, else an exact scan.

One table, `rag_vectors` (versioned by `rag_vector_schema_version`, migrations appended, never
edited), one row per (chunk id, model) with the document id, the dimension and the vector as
`real[]`. With pgvector (`CREATE EXTENSION vector` succeeds or was done by an administrator)
the row also holds `vec vector`, and an HNSW index per dimension answers nearest-neighbour
searches; without it the question is compared with every vector of the model in SQL (exact,
slow beyond tens of thousands of chunks), and start-up logs a line naming pgvector.
Vectors are unit length, so the dot product is the cosine similarity.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
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


MIGRATIONS: tuple[Callable[[Connection], Awaitable[None]], ...] = (_v1,)


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
_ANN_SQL = """
    SELECT {cols}, s.score FROM (
        SELECT chunk_id, 1 - (vec::public.vector({dim}) OPERATOR(public.<=>)
                              $1::text::public.vector({dim})) AS score
        FROM rag_vectors WHERE model = $2 AND dim = $3
        ORDER BY vec::public.vector({dim}) OPERATOR(public.<=>) $1::text::public.vector({dim})
        LIMIT $4
    ) AS s
    JOIN rag_chunks c ON c.id = s.chunk_id JOIN rag_documents d ON d.id = c.document_id
    ORDER BY s.score DESC
"""


class PostgresVectorIndex:
    def __init__(self, pool: Pool, *, pgvector: bool) -> None:
        self._pool = pool
        self.pgvector = pgvector
        self._indexed: set[int] = set()

    @property
    def exact(self) -> bool:
        return not self.pgvector

    @classmethod
    async def open(
        cls, pool: Pool, *, schema: str = "public", use_pgvector: bool = True
    ) -> PostgresVectorIndex:
        async with pool.acquire() as conn:
            await migrate(conn)
            pgvector = use_pgvector and await _enable_pgvector(conn)
        if not pgvector:
            logger.warning(
                "vector search on PostgreSQL scans every vector (exact, slow beyond ~20,000"
                " chunks): install pgvector (Debian: postgresql-15-pgvector) and restart for an"
                " HNSW index"
            )
        return cls(pool, pgvector=pgvector)

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
        async with self._pool.acquire() as conn:
            await self._ensure_ann_index(conn, dimension)
            async with conn.transaction():
                await conn.execute(
                    "DELETE FROM rag_vectors WHERE model = $1 AND chunk_id = ANY($2::text[])",
                    model,
                    ids,
                )
                vectors = [r[2] for r in rows]
                if self.pgvector:
                    await conn.executemany(
                        "INSERT INTO rag_vectors (chunk_id, model, document_id, dim, embedding,"
                        " vec) VALUES ($1, $2, $3, $4, $5::real[], $6::text::public.vector)",
                        [
                            (c, model, d, dimension, v, _literal(v))
                            for c, d, v in zip(ids, docs, vectors, strict=True)
                        ],
                    )
                else:
                    await conn.executemany(
                        "INSERT INTO rag_vectors (chunk_id, model, document_id, dim, embedding)"
                        " VALUES ($1, $2, $3, $4, $5::real[])",
                        [
                            (c, model, d, dimension, v)
                            for c, d, v in zip(ids, docs, vectors, strict=True)
                        ],
                    )

    async def remove_orphans(self, document_ids: Sequence[str]) -> int:
        if not document_ids:
            return 0
        status: str = await self._pool.execute(
            "DELETE FROM rag_vectors v WHERE v.document_id = ANY($1::text[])"
            " AND NOT EXISTS (SELECT 1 FROM rag_chunks c WHERE c.id = v.chunk_id)",
            list(document_ids),
        )
        return int(status.split()[-1])

    async def remove_other_models(self, model: str) -> int:
        status: str = await self._pool.execute("DELETE FROM rag_vectors WHERE model != $1", model)
        return int(status.split()[-1])

    async def search(self, vector: Vector, model: str, k: int) -> list[SearchHit]:
        dim = len(vector)
        if k <= 0:
            return []
        if self.pgvector:
            sql = _ANN_SQL.format(cols=_HIT_COLUMNS, dim=int(dim))
            rows = await self._pool.fetch(sql, _literal(vector), model, dim, k)
        else:
            rows = await self._pool.fetch(_EXACT_SQL, vector, model, dim, k)
        return [
            SearchHit(
                id=r["id"],
                document_id=r["document_id"],
                title=r["title"],
                snippet="",
                score=float(r["score"]),
                metadata={**(r["metadata"] or {}), "source": r["source"], "heading": r["heading"]},
                text=r["text"],
                heading=r["heading"],
            )
            for r in rows
        ]

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
