"""DocumentStore on SQLite FTS5 (the embedded default), in the same file as the sessions.

Tables (all prefixed `rag_`, versioned by `retrieval_schema_version`):
- rag_documents: one row per document (title, source, metadata JSON, content hash, counts)
- rag_chunks: one row per chunk; its integer `seq` is the rowid of the FTS row
- rag_chunks_fts: FTS5 over two columns of *analysed* terms (analysis.py): `head` (document
  title + heading path) and `body`. The tokenizer only splits on spaces, so Korean bigrams and
  English stems are indexed exactly as `analyze` made them. Ranked with bm25(head=2, body=1).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiosqlite

from tokenrelay.errors import BackendUnavailable
from tokenrelay.retrieval.analysis import index_text, query_terms
from tokenrelay.retrieval.base import Chunk, Document, SearchHit, UpsertStatus
from tokenrelay.retrieval.rerank import candidate_count, finalize

HEAD_WEIGHT = 2.0
BODY_WEIGHT = 1.0
MAX_QUERY_TERMS = 32


async def _v1(db: aiosqlite.Connection) -> None:
    await db.executescript(
        """
        CREATE TABLE IF NOT EXISTS rag_documents (
            id TEXT PRIMARY KEY,
            title TEXT NOT NULL,
            source TEXT NOT NULL DEFAULT '',
            metadata TEXT NOT NULL DEFAULT '{}',
            content_hash TEXT NOT NULL,
            char_count INTEGER NOT NULL DEFAULT 0,
            chunk_count INTEGER NOT NULL DEFAULT 0,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        );
        CREATE INDEX IF NOT EXISTS rag_documents_created ON rag_documents(created_at);
        CREATE TABLE IF NOT EXISTS rag_chunks (
            seq INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            document_id TEXT NOT NULL,
            ordinal INTEGER NOT NULL,
            heading TEXT NOT NULL DEFAULT '',
            text TEXT NOT NULL,
            start INTEGER NOT NULL DEFAULT 0,
            "end" INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX IF NOT EXISTS rag_chunks_document ON rag_chunks(document_id, ordinal);
        CREATE VIRTUAL TABLE IF NOT EXISTS rag_chunks_fts USING fts5(
            head, body, tokenize = "unicode61 remove_diacritics 0 categories 'L* N* Co M*'"
        );
        """
    )


# Ordered: MIGRATIONS[i] brings the schema from version i to i + 1. Append, never edit.
MIGRATIONS: tuple[Callable[[aiosqlite.Connection], Awaitable[None]], ...] = (_v1,)


async def migrate(db: aiosqlite.Connection) -> int:
    """Apply the missing migrations; returns the schema version."""
    await db.execute("CREATE TABLE IF NOT EXISTS retrieval_schema_version (version INTEGER)")
    async with db.execute("SELECT version FROM retrieval_schema_version") as cur:
        row = await cur.fetchone()
    version = int(row[0]) if row else 0
    if row is None:
        await db.execute("INSERT INTO retrieval_schema_version (version) VALUES (0)")
    for step in MIGRATIONS[version:]:
        await step(db)
        version += 1
        await db.execute("UPDATE retrieval_schema_version SET version = ?", (version,))
    await db.commit()
    return version


def fts_query(terms: list[str]) -> str:
    """An FTS5 MATCH expression: any of the terms (BM25 rewards chunks holding more of them)."""
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in terms[:MAX_QUERY_TERMS])


def _document(row: sqlite3.Row | tuple[Any, ...]) -> Document:
    return Document(
        id=row[0],
        title=row[1],
        source=row[2],
        metadata=json.loads(row[3]),
        content_hash=row[4],
        char_count=row[5],
        chunk_count=row[6],
        created_at=row[7],
        updated_at=row[8],
    )


_DOC_COLUMNS = (
    "id, title, source, metadata, content_hash, char_count, chunk_count, created_at, updated_at"
)


class SqliteDocumentStore:
    """FTS5 + bm25(); one aiosqlite connection, writes serialised by a lock."""

    def __init__(self, db: aiosqlite.Connection, *, rerank: bool = True) -> None:
        self._db = db
        self._write = asyncio.Lock()
        self.rerank = rerank

    @classmethod
    async def open(cls, path: Path | str, *, rerank: bool = True) -> SqliteDocumentStore:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        try:
            db = await aiosqlite.connect(str(path))
        except sqlite3.Error as e:
            raise BackendUnavailable(
                f"cannot open the document database {path}: {e}",
                suggestion="check that the data dir exists and is writable (TOKENRELAY_DATA_DIR)",
            ) from e
        try:
            await db.execute("PRAGMA busy_timeout = 5000")
            await db.execute("PRAGMA journal_mode = WAL")
            await db.execute("PRAGMA synchronous = NORMAL")
            await migrate(db)
        except sqlite3.OperationalError as e:
            await db.close()
            if "fts5" in str(e).lower():
                raise BackendUnavailable(
                    "this Python's sqlite3 has no FTS5",
                    suggestion="use a Python build with FTS5 or set TOKENRELAY_DATABASE_URL",
                ) from e
            raise
        return cls(db, rerank=rerank)

    async def upsert(self, document: Document, chunks: list[Chunk]) -> UpsertStatus:
        now = time.time()
        async with self._write:
            async with self._db.execute(
                "SELECT content_hash, created_at, metadata, title FROM rag_documents WHERE id = ?",
                (document.id,),
            ) as cur:
                old = await cur.fetchone()
            if (
                old is not None
                and old[0] == document.content_hash
                and json.loads(old[2]) == document.metadata
                and old[3] == document.title
            ):
                return "unchanged"
            created_at = old[1] if old is not None else (document.created_at or now)
            try:
                if old is not None:
                    await self._delete_rows(document.id)
                await self._db.execute(
                    f"INSERT INTO rag_documents ({_DOC_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)",
                    (
                        document.id,
                        document.title,
                        document.source,
                        json.dumps(document.metadata, ensure_ascii=False),
                        document.content_hash,
                        document.char_count,
                        len(chunks),
                        created_at,
                        now,
                    ),
                )
                await self._insert_chunks(document.title, chunks)
                await self._db.commit()
            except BaseException:
                await self._db.rollback()
                raise
        return "created" if old is None else "updated"

    async def _insert_chunks(self, title: str, chunks: list[Chunk]) -> None:
        if not chunks:
            return
        async with self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM rag_chunks") as cur:
            row = await cur.fetchone()
        base = int(row[0]) if row else 0
        rows = [
            (base + i + 1, c.id, c.document_id, c.ordinal, c.heading, c.text, c.start, c.end)
            for i, c in enumerate(chunks)
        ]
        fts_rows = [
            (base + i + 1, index_text(f"{title}\n{c.heading}"), index_text(c.text))
            for i, c in enumerate(chunks)
        ]
        await self._db.executemany(
            'INSERT INTO rag_chunks (seq, id, document_id, ordinal, heading, text, start, "end")'
            " VALUES (?,?,?,?,?,?,?,?)",
            rows,
        )
        await self._db.executemany(
            "INSERT INTO rag_chunks_fts (rowid, head, body) VALUES (?,?,?)", fts_rows
        )

    async def _delete_rows(self, document_id: str) -> int:
        await self._db.execute(
            "DELETE FROM rag_chunks_fts WHERE rowid IN"
            " (SELECT seq FROM rag_chunks WHERE document_id = ?)",
            (document_id,),
        )
        await self._db.execute("DELETE FROM rag_chunks WHERE document_id = ?", (document_id,))
        cur = await self._db.execute("DELETE FROM rag_documents WHERE id = ?", (document_id,))
        deleted = cur.rowcount
        await cur.close()
        return deleted

    async def search(self, query: str, top_k: int = 5, min_score: float = 0.0) -> list[SearchHit]:
        terms = query_terms(query)
        if not terms or top_k <= 0:
            return []
        limit = candidate_count(top_k) if self.rerank else top_k
        sql = f"""
            SELECT c.id, c.document_id, c.heading, c.text, d.title, d.source, d.metadata, f.score
            FROM (
                SELECT rowid, -bm25(rag_chunks_fts, {HEAD_WEIGHT}, {BODY_WEIGHT}) AS score
                FROM rag_chunks_fts WHERE rag_chunks_fts MATCH ?
                ORDER BY bm25(rag_chunks_fts, {HEAD_WEIGHT}, {BODY_WEIGHT}) LIMIT ?
            ) AS f
            JOIN rag_chunks c ON c.seq = f.rowid
            JOIN rag_documents d ON d.id = c.document_id
            ORDER BY f.score DESC
        """
        async with self._db.execute(sql, (fts_query(terms), limit)) as cur:
            rows = await cur.fetchall()
        candidates = [
            SearchHit(
                id=r[0],
                document_id=r[1],
                title=r[4],
                snippet="",
                score=float(r[7]),
                metadata={**json.loads(r[6]), "source": r[5], "heading": r[2]},
                text=r[3],
                heading=r[2],
            )
            for r in rows
        ]
        return finalize(terms, candidates, top_k=top_k, min_score=min_score, use_rerank=self.rerank)

    async def list_documents(self, limit: int = 100, offset: int = 0) -> list[Document]:
        async with self._db.execute(
            f"SELECT {_DOC_COLUMNS} FROM rag_documents ORDER BY created_at, id LIMIT ? OFFSET ?",
            (limit, offset),
        ) as cur:
            return [_document(r) for r in await cur.fetchall()]

    async def get_document(self, document_id: str) -> Document | None:
        async with self._db.execute(
            f"SELECT {_DOC_COLUMNS} FROM rag_documents WHERE id = ?", (document_id,)
        ) as cur:
            row = await cur.fetchone()
        return _document(row) if row is not None else None

    async def get_chunks(self, document_id: str) -> list[Chunk]:
        async with self._db.execute(
            'SELECT id, document_id, ordinal, text, heading, start, "end" FROM rag_chunks'
            " WHERE document_id = ? ORDER BY ordinal",
            (document_id,),
        ) as cur:
            return [Chunk(*r) for r in await cur.fetchall()]

    async def delete_document(self, document_id: str) -> bool:
        async with self._write:
            try:
                deleted = await self._delete_rows(document_id)
                await self._db.commit()
            except BaseException:
                await self._db.rollback()
                raise
        return deleted > 0

    async def count(self) -> tuple[int, int]:
        async with self._db.execute(
            "SELECT (SELECT COUNT(*) FROM rag_documents), (SELECT COUNT(*) FROM rag_chunks)"
        ) as cur:
            row = await cur.fetchone()
        return (int(row[0]), int(row[1])) if row else (0, 0)

    async def close(self) -> None:
        await self._db.close()
