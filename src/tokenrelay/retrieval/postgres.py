"""DocumentStore on PostgreSQL: BM25 over a postings table, computed in SQL.

Tables live in one schema (default `public`), all prefixed `rag_`, versioned by
`retrieval_schema_version`:
- rag_chunks keeps each chunk's analysed terms (head: title + heading path; body), made by our
  own analysis (analysis.py), so no PostgreSQL text-search configuration touches them.
- rag_postings: one row per (term, chunk) with the term's weighted frequency and the chunk's
  length; BM25 is computed over it in SQL, index-only (pg_postings.py).
- rag_terms (term -> number of chunks holding it) and rag_stats (chunks, total terms) are kept
  in the same transaction as every write.

Search (migration 2; the tsvector/GIN and pg_trgm paths before it read a heap row per match
and cost 100-900 ms at 10,000-100,000 chunks): BM25 exactly as SQLite FTS5 computes it,
bounded like the SQLite store (pruning.py, pg_postings.py); the texts are read for the winners
only, and reranked like the SQLite store (rerank.py).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from tokenrelay.errors import BackendUnavailable, misconfigured
from tokenrelay.i18n import tr
from tokenrelay.retrieval.analysis import analyze, heading_terms, query_terms
from tokenrelay.retrieval.base import Chunk, Document, SearchHit, UpsertStatus
from tokenrelay.retrieval.pg_postings import insert_postings, rank
from tokenrelay.retrieval.pg_upkeep import Upkeep
from tokenrelay.retrieval.pruning import POSTINGS_BUDGET
from tokenrelay.retrieval.rerank import candidate_count, finalize

# asyncpg ships no type information; these aliases document what is meant
Connection = Any  # Connection
Pool = Any  # Pool

MAX_QUERY_TERMS = 32
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _import_asyncpg() -> Any:
    try:
        import asyncpg
    except ImportError as e:  # pragma: no cover - depends on the install
        raise misconfigured(
            BackendUnavailable,
            tr("the document store of this server is not available"),
            "PostgreSQL documents need the asyncpg package: pip install 'tokenrelay[postgres]',"
            " or unset TOKENRELAY_DATABASE_URL",
        ) from e
    return asyncpg


async def _v1(conn: Connection) -> None:
    await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public")
    await conn.execute(
        """
        CREATE TABLE IF NOT EXISTS rag_documents (
            id TEXT PRIMARY KEY,
            title TEXT NOT NULL,
            source TEXT NOT NULL DEFAULT '',
            metadata JSONB NOT NULL DEFAULT '{}',
            content_hash TEXT NOT NULL,
            char_count INTEGER NOT NULL DEFAULT 0,
            chunk_count INTEGER NOT NULL DEFAULT 0,
            created_at DOUBLE PRECISION NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL
        );
        CREATE INDEX IF NOT EXISTS rag_documents_created ON rag_documents (created_at);
        CREATE INDEX IF NOT EXISTS rag_documents_title_trgm
            ON rag_documents USING gin (title public.gin_trgm_ops);
        CREATE TABLE IF NOT EXISTS rag_chunks (
            seq BIGSERIAL PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            document_id TEXT NOT NULL REFERENCES rag_documents (id) ON DELETE CASCADE,
            ordinal INTEGER NOT NULL,
            heading TEXT NOT NULL DEFAULT '',
            text TEXT NOT NULL,
            start_offset INTEGER NOT NULL DEFAULT 0,
            end_offset INTEGER NOT NULL DEFAULT 0,
            head_terms TEXT[] NOT NULL,
            body_terms TEXT[] NOT NULL,
            tsv TSVECTOR NOT NULL
        );
        CREATE INDEX IF NOT EXISTS rag_chunks_document ON rag_chunks (document_id, ordinal);
        CREATE INDEX IF NOT EXISTS rag_chunks_tsv ON rag_chunks USING gin (tsv);
        CREATE INDEX IF NOT EXISTS rag_chunks_text_trgm
            ON rag_chunks USING gin (text public.gin_trgm_ops);
        CREATE TABLE IF NOT EXISTS rag_terms (term TEXT PRIMARY KEY, df INTEGER NOT NULL);
        CREATE TABLE IF NOT EXISTS rag_stats (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            chunks BIGINT NOT NULL,
            terms BIGINT NOT NULL
        );
        INSERT INTO rag_stats (id, chunks, terms) VALUES (1, 0, 0) ON CONFLICT DO NOTHING;
        """
    )


async def _v2(conn: Connection) -> None:
    """Postings with term frequencies and chunk lengths (BM25 in SQL, index-only), filled
    from the stored terms; the tsvector, its GIN index and the trigram indexes go."""
    await conn.execute(
        """
        DROP INDEX IF EXISTS rag_chunks_text_trgm;
        DROP INDEX IF EXISTS rag_documents_title_trgm;
        DROP INDEX IF EXISTS rag_chunks_tsv;
        ALTER TABLE rag_chunks DROP COLUMN IF EXISTS tsv;
        CREATE TABLE IF NOT EXISTS rag_postings (
            term TEXT NOT NULL,
            seq BIGINT NOT NULL,
            tf INTEGER NOT NULL,
            len INTEGER NOT NULL,
            PRIMARY KEY (term, seq) INCLUDE (tf, len)
        );
        INSERT INTO rag_postings (term, seq, tf, len)
            SELECT t.term, c.seq, t.tf, cardinality(c.head_terms) + cardinality(c.body_terms)
            FROM rag_chunks c, LATERAL (
                SELECT x.term, sum(x.w)::int AS tf FROM (
                    SELECT unnest(c.head_terms) AS term, 2 AS w
                    UNION ALL SELECT unnest(c.body_terms), 1
                ) AS x GROUP BY x.term
            ) AS t
            ON CONFLICT DO NOTHING;
        """
    )


# Ordered: MIGRATIONS[i] brings the schema from version i to i + 1. Append, never edit.
MIGRATIONS: tuple[Callable[[Connection], Awaitable[None]], ...] = (_v1, _v2)

_MIGRATION_LOCK = 0x7265_7472  # pg_advisory_xact_lock key: one migrating replica at a time


async def migrate(conn: Connection) -> int:
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
        await conn.execute("CREATE TABLE IF NOT EXISTS retrieval_schema_version (version INT)")
        version = await conn.fetchval("SELECT version FROM retrieval_schema_version")
        if version is None:
            await conn.execute("INSERT INTO retrieval_schema_version (version) VALUES (0)")
            version = 0
        for step in MIGRATIONS[version:]:
            await step(conn)
            version += 1
            await conn.execute("UPDATE retrieval_schema_version SET version = $1", version)
    return int(version)


def _document(row: Any) -> Document:
    metadata = row["metadata"]
    return Document(
        id=row["id"],
        title=row["title"],
        source=row["source"],
        metadata=json.loads(metadata) if isinstance(metadata, str) else dict(metadata),
        content_hash=row["content_hash"],
        char_count=row["char_count"],
        chunk_count=row["chunk_count"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


_DOC_COLUMNS = (
    "id, title, source, metadata, content_hash, char_count, chunk_count, created_at, updated_at"
)


class _StatsDelta:
    """Changes to rag_terms and rag_stats of one transaction, written once at its end."""

    def __init__(self) -> None:
        self.df: Counter[str] = Counter()
        self.chunks = 0
        self.terms = 0
        self.postings = 0  # rag_postings rows inserted and deleted (pg_upkeep.py counts them)

    def add(self, head: Sequence[str], body: Sequence[str], sign: int) -> None:
        for term in set(head).union(body):
            self.df[term] += sign
        self.chunks += sign
        self.terms += sign * (len(head) + len(body))

    async def save(self, conn: Connection) -> None:
        terms = sorted(t for t, n in self.df.items() if n)  # one lock order: no deadlocks
        if terms:
            await conn.execute(
                "INSERT INTO rag_terms (term, df) SELECT * FROM unnest($1::text[], $2::int[])"
                " ON CONFLICT (term) DO UPDATE SET df = rag_terms.df + excluded.df",
                terms,
                [self.df[t] for t in terms],
            )
        if self.chunks or self.terms:
            await conn.execute(
                "UPDATE rag_stats SET chunks = chunks + $1, terms = terms + $2 WHERE id = 1",
                self.chunks,
                self.terms,
            )


_ROWS_SQL = """
    SELECT c.seq, c.id, c.document_id, c.heading, c.text, c.body_terms,
           d.title, d.source, d.metadata
    FROM rag_chunks c JOIN rag_documents d ON d.id = c.document_id
    WHERE c.seq = ANY($1::bigint[])
"""


class PostgresDocumentStore:
    def __init__(self, pool: Pool, *, rerank: bool = False, schema: str = "public") -> None:
        self._pool = pool
        self.rerank = rerank
        self.schema = schema
        self.postings_budget = POSTINGS_BUDGET  # pruning.py
        # VACUUM (ANALYZE) after bulk writes (pg_upkeep.py)
        self.upkeep = Upkeep(pool, schema)

    @property
    def pool(self) -> Pool:
        """The connection pool, shared with the vector index (vector_postgres.py)."""
        return self._pool

    @classmethod
    async def open(
        cls, dsn: str, *, rerank: bool = False, schema: str = "public", max_size: int = 10
    ) -> PostgresDocumentStore:
        """Connect, create `schema` if needed and migrate. `schema` must be a plain identifier."""
        if not _SCHEMA_NAME.match(schema):
            raise ValueError(f"invalid schema name {schema!r}")
        asyncpg = _import_asyncpg()

        async def init(conn: Connection) -> None:
            await conn.set_type_codec(
                "jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
            )

        try:
            # a server setting, not SET: the pool's RESET ALL on release must not undo it
            pool = await asyncpg.create_pool(
                dsn,
                min_size=1,
                max_size=max_size,
                init=init,
                # jit: compiling a plan costs tens of ms, more than these searches take
                server_settings={"search_path": f"{schema}, public", "jit": "off"},
            )
        except (OSError, asyncpg.PostgresError) as e:
            raise misconfigured(
                BackendUnavailable,
                tr("the document store of this server is not available"),
                f"cannot connect to PostgreSQL for documents: {e}: check"
                " TOKENRELAY_DATABASE_URL and that the server is up",
                retryable=True,
            ) from e
        async with pool.acquire() as conn:
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            await migrate(conn)
        store = cls(pool, rerank=rerank, schema=schema)
        await store.upkeep.start()
        return store

    async def upsert(self, document: Document, chunks: list[Chunk]) -> UpsertStatus:
        return (await self.upsert_many([(document, chunks)]))[0]

    async def upsert_many(
        self, items: Sequence[tuple[Document, Sequence[Chunk]]]
    ) -> list[UpsertStatus]:
        """Many documents in one transaction on one connection; statuses in the same order."""
        if not items:
            return []
        stats = _StatsDelta()
        async with self._pool.acquire() as conn, conn.transaction():
            statuses = [await self._upsert(conn, d, c, stats) for d, c in items]
            await stats.save(conn)
        self.upkeep.wrote(stats.postings)
        return statuses

    async def _upsert(
        self, conn: Connection, document: Document, chunks: Sequence[Chunk], stats: _StatsDelta
    ) -> UpsertStatus:
        old = await conn.fetchrow(
            "SELECT content_hash, created_at, metadata, title FROM rag_documents"
            " WHERE id = $1 FOR UPDATE",
            document.id,
        )
        if (
            old is not None
            and old["content_hash"] == document.content_hash
            and old["metadata"] == document.metadata
            and old["title"] == document.title
        ):
            return "unchanged"
        created_at = old["created_at"] if old is not None else None
        heads: dict[str, list[str]] = {}
        analysed: list[tuple[list[str], list[str]]] = []
        for c in chunks:
            head = heads.get(c.heading)
            if head is None:
                head = heads[c.heading] = analyze(f"{document.title}\n{c.heading}")
            analysed.append((head, analyze(c.text)))
        await self._delete_rows(conn, document.id, stats)
        await conn.execute(
            f"INSERT INTO rag_documents ({_DOC_COLUMNS})"
            " VALUES ($1, $2, $3, $4, $5, $6, $7,"
            " COALESCE($8, extract(epoch from now())), extract(epoch from now()))",
            document.id,
            document.title,
            document.source,
            document.metadata,
            document.content_hash,
            document.char_count,
            len(chunks),
            created_at,
        )
        seqs = await conn.fetchval(
            "SELECT array_agg(nextval(pg_get_serial_sequence('rag_chunks', 'seq')))"
            " FROM generate_series(1, $1)",
            len(chunks),
        )
        await conn.executemany(
            "INSERT INTO rag_chunks (seq, id, document_id, ordinal, heading, text, start_offset,"
            " end_offset, head_terms, body_terms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            [
                (q, c.id, c.document_id, c.ordinal, c.heading, c.text, c.start, c.end, h, b)
                for q, c, (h, b) in zip(seqs or [], chunks, analysed, strict=True)
            ],
        )
        stats.postings += await insert_postings(conn, seqs or [], analysed)
        for head, body in analysed:
            stats.add(head, body, 1)
        return "created" if old is None else "updated"

    async def _delete_rows(self, conn: Connection, document_id: str, stats: _StatsDelta) -> bool:
        rows = await conn.fetch(
            "DELETE FROM rag_chunks WHERE document_id = $1 RETURNING seq, head_terms, body_terms",
            document_id,
        )
        terms: list[str] = []
        seqs: list[int] = []
        for r in rows:
            stats.add(r["head_terms"], r["body_terms"], -1)
            held = set(r["head_terms"]).union(r["body_terms"])
            terms += held
            seqs += [r["seq"]] * len(held)
        stats.postings += len(terms)
        if terms:
            await conn.execute(
                "DELETE FROM rag_postings p USING unnest($1::text[], $2::bigint[]) AS d(term, seq)"
                " WHERE p.term = d.term AND p.seq = d.seq",
                terms,
                seqs,
            )
        status = await conn.execute("DELETE FROM rag_documents WHERE id = $1", document_id)
        return bool(status.endswith(" 1"))

    async def search(self, query: str, top_k: int = 5, min_score: float = 0.0) -> list[SearchHit]:
        terms = list(dict.fromkeys(query_terms(query)))[:MAX_QUERY_TERMS]
        if not terms or top_k <= 0:
            return []
        limit = candidate_count(top_k) if self.rerank else top_k
        async with self._pool.acquire() as conn:
            best = await rank(conn, terms, limit, budget=self.postings_budget)
            rows = await conn.fetch(_ROWS_SQL, [seq for seq, _ in best]) if best else []
        found = {r["seq"]: r for r in rows}
        kept = [(score, found[seq]) for seq, score in best if seq in found]
        return finalize(
            terms,
            [self._hit(r, score) for score, r in kept],
            top_k=top_k,
            min_score=min_score,
            use_rerank=self.rerank,
            chunk_terms=(
                [heading_terms(r["heading"]) + tuple(r["body_terms"]) for _, r in kept]
                if self.rerank
                else None
            ),
        )

    @staticmethod
    def _hit(row: Any, score: float) -> SearchHit:
        metadata = row["metadata"]
        meta = json.loads(metadata) if isinstance(metadata, str) else dict(metadata)
        return SearchHit(
            id=row["id"],
            document_id=row["document_id"],
            title=row["title"],
            snippet="",
            score=score,
            metadata={**meta, "source": row["source"], "heading": row["heading"]},
            text=row["text"],
            heading=row["heading"],
        )

    async def list_documents(self, limit: int = 100, offset: int = 0) -> list[Document]:
        rows = await self._pool.fetch(
            f"SELECT {_DOC_COLUMNS} FROM rag_documents ORDER BY created_at, id LIMIT $1 OFFSET $2",
            limit,
            offset,
        )
        return [_document(r) for r in rows]

    async def get_document(self, document_id: str) -> Document | None:
        row = await self._pool.fetchrow(
            f"SELECT {_DOC_COLUMNS} FROM rag_documents WHERE id = $1", document_id
        )
        return _document(row) if row is not None else None

    async def get_chunks(self, document_id: str) -> list[Chunk]:
        rows = await self._pool.fetch(
            "SELECT id, document_id, ordinal, text, heading, start_offset, end_offset"
            " FROM rag_chunks WHERE document_id = $1 ORDER BY ordinal",
            document_id,
        )
        return [Chunk(*tuple(r)) for r in rows]

    async def delete_document(self, document_id: str) -> bool:
        stats = _StatsDelta()
        async with self._pool.acquire() as conn, conn.transaction():
            deleted = await self._delete_rows(conn, document_id, stats)
            await stats.save(conn)
        self.upkeep.wrote(stats.postings)
        return deleted

    async def count(self) -> tuple[int, int]:
        row = await self._pool.fetchrow(
            "SELECT (SELECT count(*) FROM rag_documents) AS d,"
            " (SELECT count(*) FROM rag_chunks) AS c"
        )
        return (int(row["d"]), int(row["c"])) if row else (0, 0)

    async def close(self) -> None:
        await self.upkeep.close()
        await self._pool.close()
