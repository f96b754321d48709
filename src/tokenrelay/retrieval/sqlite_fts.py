"""DocumentStore on SQLite FTS5 (the embedded default), in the same file as the sessions.

Tables (all prefixed `rag_`, versioned by `retrieval_schema_version`):
- rag_documents: one row per document (title, source, metadata JSON, content hash, counts)
- rag_chunks: one row per chunk; its integer `seq` is the rowid of the FTS row
- rag_chunks_fts: FTS5 over two columns of *analysed* terms (analysis.py): `head` (document
  title + heading path) and `body`. The tokenizer only splits on spaces, so Korean bigrams and
  English stems are indexed exactly as `analyze` made them. Ranked with bm25(head=2, body=1).

Each store owns two plain sqlite3 connections, each on its own thread (`sqlite_worker.py`): a
writer that stores a whole batch of documents in one transaction and one thread hop, and a
reader for searches, so that a search does not wait behind a large ingest (WAL lets them run
side by side). An in-memory database has one connection for both.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenrelay.errors import BackendUnavailable, misconfigured
from tokenrelay.i18n import tr
from tokenrelay.retrieval.analysis import analyze, heading_terms, query_terms
from tokenrelay.retrieval.base import Chunk, Document, SearchHit, UpsertStatus
from tokenrelay.retrieval.pruning import POSTINGS_BUDGET, plan_query, rescore
from tokenrelay.retrieval.rerank import candidate_count, finalize
from tokenrelay.sqlite_worker import SqliteWorker, write_transaction

HEAD_WEIGHT = 2.0
BODY_WEIGHT = 1.0
MAX_QUERY_TERMS = 32
_ID_BATCH = 500  # ids per `IN (...)` lookup, well under SQLite's variable limit
CANDIDATES = 50  # rows a bounded search rescores (pruning.py)


def _execute_script(conn: sqlite3.Connection, script: str) -> None:
    """Statement by statement: `executescript` would commit the migration's transaction."""
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)


def _v1(conn: sqlite3.Connection) -> None:
    _execute_script(
        conn,
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
        """,
    )


def _v2(conn: sqlite3.Connection) -> None:
    """Document frequencies and corpus totals for bounded search (pruning.py), backfilled."""
    _execute_script(
        conn,
        """
        CREATE TABLE IF NOT EXISTS rag_terms (term TEXT PRIMARY KEY, df INTEGER NOT NULL)
            WITHOUT ROWID;
        CREATE TABLE IF NOT EXISTS rag_stats (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            chunks INTEGER NOT NULL,
            terms INTEGER NOT NULL
        );
        INSERT OR IGNORE INTO rag_stats (id, chunks, terms) VALUES (1, 0, 0);
        """,
    )
    totals = _Totals()
    for head, body in conn.execute("SELECT head, body FROM rag_chunks_fts"):
        totals.add(head.split(), body.split())
    totals.save(conn)


# Ordered: MIGRATIONS[i] brings the schema from version i to i + 1. Append, never edit.
MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (_v1, _v2)


def migrate(conn: sqlite3.Connection) -> int:
    """Apply the missing migrations in one transaction; returns the schema version."""

    def body(conn: sqlite3.Connection) -> int:
        conn.execute("CREATE TABLE IF NOT EXISTS retrieval_schema_version (version INTEGER)")
        row = conn.execute("SELECT version FROM retrieval_schema_version").fetchone()
        version = int(row[0]) if row else 0
        if row is None:
            conn.execute("INSERT INTO retrieval_schema_version (version) VALUES (0)")
        for step in MIGRATIONS[version:]:
            step(conn)
            version += 1
            conn.execute("UPDATE retrieval_schema_version SET version = ?", (version,))
        return version

    return write_transaction(conn, body)


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


def _configure(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA busy_timeout = 5000")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA cache_size = -32000")  # 32 MB of pages: the FTS index stays warm


@dataclass(frozen=True, slots=True)
class _Stored:
    """What decides whether a re-ingest is a no-op."""

    content_hash: str
    created_at: float
    metadata: str  # JSON
    title: str

    def same_as(self, document: Document) -> bool:
        return (
            self.content_hash == document.content_hash
            and self.title == document.title
            and json.loads(self.metadata) == document.metadata
        )


def _stored(conn: sqlite3.Connection, ids: Sequence[str]) -> dict[str, _Stored]:
    found: dict[str, _Stored] = {}
    for i in range(0, len(ids), _ID_BATCH):
        part = ids[i : i + _ID_BATCH]
        marks = ",".join("?" * len(part))
        for row in conn.execute(
            "SELECT id, content_hash, created_at, metadata, title FROM rag_documents"
            f" WHERE id IN ({marks})",
            part,
        ):
            found[row[0]] = _Stored(row[1], row[2], row[3], row[4])
    return found


Analysed = list[tuple[list[str], list[str]]]  # per chunk: (head terms, body terms)


def analyse_chunks(title: str, chunks: Sequence[Chunk]) -> Analysed:
    """The terms of each chunk; the head (title + heading) is analysed once per heading."""
    heads: dict[str, list[str]] = {}
    out: Analysed = []
    for c in chunks:
        head = heads.get(c.heading)
        if head is None:
            head = heads[c.heading] = analyze(f"{title}\n{c.heading}")
        out.append((head, analyze(c.text)))
    return out


class _Totals:
    """Changes to `rag_terms` (chunks per term) and `rag_stats` (chunks, terms) of one write."""

    def __init__(self, sign: int = 1) -> None:
        self.sign = sign
        self.df: Counter[str] = Counter()
        self.chunks = 0
        self.terms = 0

    def add(self, head: list[str], body: list[str]) -> None:
        self.df.update(set(head).union(body))
        self.chunks += 1
        self.terms += len(head) + len(body)

    def save(self, conn: sqlite3.Connection) -> None:
        if not self.chunks:
            return
        sign = self.sign
        conn.executemany(
            "INSERT INTO rag_terms (term, df) VALUES (?, ?)"
            " ON CONFLICT (term) DO UPDATE SET df = df + excluded.df",
            [(t, sign * n) for t, n in self.df.items()],
        )
        if sign < 0:
            conn.executemany(
                "DELETE FROM rag_terms WHERE term = ? AND df <= 0", [(t,) for t in self.df]
            )
        conn.execute(
            "UPDATE rag_stats SET chunks = chunks + ?, terms = terms + ? WHERE id = 1",
            (sign * self.chunks, sign * self.terms),
        )
        self.df.clear()
        self.chunks = self.terms = 0


class _BatchWriter:
    """Rows of one batch, written with one executemany per table."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        row = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM rag_chunks").fetchone()
        self.seq = int(row[0])
        self.delete: list[tuple[str]] = []
        self.documents: list[tuple[Any, ...]] = []
        self.chunks: list[tuple[Any, ...]] = []
        self.fts: list[tuple[int, str, str]] = []
        self.totals = _Totals()
        self.pending: set[str] = set()

    def add(
        self,
        document: Document,
        chunks: Sequence[Chunk],
        analysed: Analysed,
        *,
        replace: bool,
        created_at: float,
        now: float,
    ) -> None:
        if document.id in self.pending:  # the same id twice in one batch: write the first
            self.flush()
        if replace:
            self.delete.append((document.id,))
        self.documents.append(
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
            )
        )
        for c, (head, body) in zip(chunks, analysed, strict=True):
            self.seq += 1
            self.chunks.append(
                (self.seq, c.id, c.document_id, c.ordinal, c.heading, c.text, c.start, c.end)
            )
            self.fts.append((self.seq, " ".join(head), " ".join(body)))
            self.totals.add(head, body)
        self.pending.add(document.id)

    def flush(self) -> None:
        conn = self.conn
        if self.delete:
            _delete_rows(conn, self.delete)
        conn.executemany(
            f"INSERT INTO rag_documents ({_DOC_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)",
            self.documents,
        )
        conn.executemany(
            'INSERT INTO rag_chunks (seq, id, document_id, ordinal, heading, text, start, "end")'
            " VALUES (?,?,?,?,?,?,?,?)",
            self.chunks,
        )
        conn.executemany("INSERT INTO rag_chunks_fts (rowid, head, body) VALUES (?,?,?)", self.fts)
        self.totals.save(conn)
        self.delete, self.documents, self.chunks, self.fts = [], [], [], []
        self.pending.clear()


def _delete_rows(conn: sqlite3.Connection, ids: list[tuple[str]]) -> int:
    removed = _Totals(sign=-1)
    for (document_id,) in ids:
        for head, body in conn.execute(
            "SELECT f.head, f.body FROM rag_chunks c JOIN rag_chunks_fts f ON f.rowid = c.seq"
            " WHERE c.document_id = ?",
            (document_id,),
        ):
            removed.add(head.split(), body.split())
    removed.save(conn)
    conn.executemany(
        "DELETE FROM rag_chunks_fts WHERE rowid IN"
        " (SELECT seq FROM rag_chunks WHERE document_id = ?)",
        ids,
    )
    conn.executemany("DELETE FROM rag_chunks WHERE document_id = ?", ids)
    before = conn.total_changes
    conn.executemany("DELETE FROM rag_documents WHERE id = ?", ids)
    return conn.total_changes - before


def write_batch(
    conn: sqlite3.Connection, items: Sequence[tuple[Document, Sequence[Chunk]]]
) -> list[UpsertStatus]:
    """Store a batch of documents in one transaction (runs on the writer thread).

    The analysis happens before the write lock is taken, for the documents that an unlocked
    look says have changed; the decision itself is made again under the lock.
    """
    ids = list(dict.fromkeys(d.id for d, _ in items))
    seen = _stored(conn, ids)
    analysed: dict[int, Analysed] = {}
    for i, (document, chunks) in enumerate(items):
        old = seen.get(document.id)
        if old is None or not old.same_as(document):
            analysed[i] = analyse_chunks(document.title, chunks)

    def body(conn: sqlite3.Connection) -> list[UpsertStatus]:
        now = time.time()
        stored = _stored(conn, ids)
        writer = _BatchWriter(conn)
        statuses: list[UpsertStatus] = []
        for i, (document, chunks) in enumerate(items):
            old = stored.get(document.id)
            if old is not None and old.same_as(document):
                statuses.append("unchanged")
                continue
            created_at = old.created_at if old is not None else (document.created_at or now)
            terms = analysed.get(i)
            if terms is None:
                terms = analyse_chunks(document.title, chunks)
            writer.add(
                document, chunks, terms, replace=old is not None, created_at=created_at, now=now
            )
            stored[document.id] = _Stored(
                document.content_hash,
                created_at,
                json.dumps(document.metadata, ensure_ascii=False),
                document.title,
            )
            statuses.append("created" if old is None else "updated")
        writer.flush()
        return statuses

    return write_transaction(conn, body)


_SEARCH_SQL = f"""
    SELECT c.id, c.document_id, c.heading, c.text, d.title, d.source, d.metadata, f.score,
           {{terms}}
    FROM (
        SELECT rowid, -bm25(rag_chunks_fts, {HEAD_WEIGHT}, {BODY_WEIGHT}) AS score
        FROM rag_chunks_fts WHERE rag_chunks_fts MATCH ?
        ORDER BY bm25(rag_chunks_fts, {HEAD_WEIGHT}, {BODY_WEIGHT}) LIMIT ?
    ) AS f
    JOIN rag_chunks c ON c.seq = f.rowid
    JOIN rag_documents d ON d.id = c.document_id
    {{join}}
    ORDER BY f.score DESC
"""
# the inner query only ranks rowids; texts and analysed terms are read for the winners only
SEARCH_SQL = _SEARCH_SQL.format(terms="'', ''", join="")
SEARCH_WITH_TERMS_SQL = _SEARCH_SQL.format(
    terms="b.head, b.body", join="JOIN rag_chunks_fts b ON b.rowid = f.rowid"
)
Row = tuple[Any, ...]  # SEARCH_SQL's columns; [7] is the score
# bounded search: candidates (rowid and analysed columns only) ...
_CANDIDATES_SQL = f"""
    SELECT f.rowid, b.head, b.body FROM (
        SELECT rowid FROM rag_chunks_fts WHERE rag_chunks_fts MATCH ?
        ORDER BY bm25(rag_chunks_fts, {HEAD_WEIGHT}, {BODY_WEIGHT}) LIMIT ?
    ) AS f JOIN rag_chunks_fts b ON b.rowid = f.rowid
"""
# ... then the texts of the few that are kept
_ROWS_SQL = """
    SELECT c.seq, c.id, c.document_id, c.heading, c.text, d.title, d.source, d.metadata
    FROM rag_chunks c JOIN rag_documents d ON d.id = c.document_id WHERE c.seq IN ({marks})
"""


def search_rows(
    conn: sqlite3.Connection, terms: list[str], limit: int, *, with_terms: bool, budget: int
) -> list[Row]:
    """The best `limit` rows for `terms`, best first (runs on the reader thread).

    Exhaustive when the terms' postings fit `budget`; else the rare terms select candidates
    and all terms rescore them (pruning.py).
    """
    marks = ",".join("?" * len(terms))
    df = dict(conn.execute(f"SELECT term, df FROM rag_terms WHERE term IN ({marks})", terms))
    plan = plan_query(terms, df, budget=budget)
    if not plan.select:
        return []
    if plan.exhaustive:
        sql = SEARCH_WITH_TERMS_SQL if with_terms else SEARCH_SQL
        return conn.execute(sql, (fts_query(list(plan.select)), limit)).fetchall()
    stats = conn.execute("SELECT chunks, terms FROM rag_stats WHERE id = 1").fetchone()
    n_chunks, n_terms = (int(stats[0]), int(stats[1])) if stats else (0, 0)
    avg_len = n_terms / n_chunks if n_chunks else 0.0
    every = plan.select + plan.score_only
    candidates = [
        (rescore(every, head, body, df, n_chunks, avg_len), rowid, head, body)
        for rowid, head, body in conn.execute(
            _CANDIDATES_SQL, (fts_query(list(plan.select)), max(CANDIDATES, 2 * limit))
        )
    ]
    candidates.sort(key=lambda c: c[0], reverse=True)
    best = candidates[:limit]
    if not best:
        return []
    marks = ",".join("?" * len(best))
    found = {r[0]: r[1:] for r in conn.execute(_ROWS_SQL.format(marks=marks), [c[1] for c in best])}
    return [
        (*found[rowid], score, head, body) for score, rowid, head, body in best if rowid in found
    ]


class SqliteDocumentStore:
    """FTS5 + bm25(); a writer and a reader connection, each on its own thread."""

    def __init__(
        self,
        writer: SqliteWorker,
        reader: SqliteWorker,
        *,
        rerank: bool = False,
        postings_budget: int = POSTINGS_BUDGET,
    ) -> None:
        self._writer = writer
        self._reader = reader
        self.rerank = rerank
        self.postings_budget = postings_budget  # pruning.py; 0 would rank by the rarest term

    @classmethod
    async def open(
        cls, path: Path | str, *, rerank: bool = False, postings_budget: int = POSTINGS_BUDGET
    ) -> SqliteDocumentStore:
        memory = str(path) == ":memory:"
        if not memory:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        try:
            writer = await SqliteWorker.open(str(path), name="rag-sqlite-writer")
        except sqlite3.Error as e:
            raise misconfigured(
                BackendUnavailable,
                tr("the document store of this server is not available"),
                f"cannot open the document database {path}: {e}: check that the data dir"
                " exists and is writable (TOKENRELAY_DATA_DIR)",
            ) from e
        try:
            await writer.run(_configure)
            await writer.run(migrate)
            reader = writer
            if not memory:
                reader = await SqliteWorker.open(str(path), name="rag-sqlite-reader")
                await reader.run(_configure)
        except sqlite3.OperationalError as e:
            await writer.close()
            if "fts5" in str(e).lower():
                raise misconfigured(
                    BackendUnavailable,
                    tr("the document store of this server is not available"),
                    "this Python's sqlite3 has no FTS5: use a Python build with FTS5 or set"
                    " TOKENRELAY_DATABASE_URL",
                ) from e
            raise
        return cls(writer, reader, rerank=rerank, postings_budget=postings_budget)

    async def upsert(self, document: Document, chunks: list[Chunk]) -> UpsertStatus:
        return (await self.upsert_many([(document, chunks)]))[0]

    async def upsert_many(
        self, items: Sequence[tuple[Document, Sequence[Chunk]]]
    ) -> list[UpsertStatus]:
        """Many documents in one transaction and one thread hop; statuses in the same order."""
        if not items:
            return []
        return await self._writer.run(lambda conn: write_batch(conn, items))

    async def search(self, query: str, top_k: int = 5, min_score: float = 0.0) -> list[SearchHit]:
        terms = query_terms(query)
        if not terms or top_k <= 0:
            return []
        terms = terms[:MAX_QUERY_TERMS]
        rerank = self.rerank
        limit = candidate_count(top_k) if rerank else top_k
        budget = self.postings_budget
        rows = await self._reader.run(
            lambda conn: search_rows(conn, terms, limit, with_terms=rerank, budget=budget)
        )
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
        chunk_terms = [heading_terms(r[2]) + tuple(r[9].split()) for r in rows] if rerank else None
        return finalize(
            terms,
            candidates,
            top_k=top_k,
            min_score=min_score,
            use_rerank=rerank,
            chunk_terms=chunk_terms,
        )

    async def list_documents(self, limit: int = 100, offset: int = 0) -> list[Document]:
        rows = await self._reader.run(
            lambda conn: conn.execute(
                f"SELECT {_DOC_COLUMNS} FROM rag_documents ORDER BY created_at, id"
                " LIMIT ? OFFSET ?",
                (limit, offset),
            ).fetchall()
        )
        return [_document(r) for r in rows]

    async def get_document(self, document_id: str) -> Document | None:
        row = await self._reader.run(
            lambda conn: conn.execute(
                f"SELECT {_DOC_COLUMNS} FROM rag_documents WHERE id = ?", (document_id,)
            ).fetchone()
        )
        return _document(row) if row is not None else None

    async def get_chunks(self, document_id: str) -> list[Chunk]:
        rows = await self._reader.run(
            lambda conn: conn.execute(
                'SELECT id, document_id, ordinal, text, heading, start, "end" FROM rag_chunks'
                " WHERE document_id = ? ORDER BY ordinal",
                (document_id,),
            ).fetchall()
        )
        return [Chunk(*r) for r in rows]

    async def delete_document(self, document_id: str) -> bool:
        deleted = await self._writer.run(
            lambda conn: write_transaction(conn, lambda c: _delete_rows(c, [(document_id,)]))
        )
        return deleted > 0

    async def count(self) -> tuple[int, int]:
        row = await self._reader.run(
            lambda conn: conn.execute(
                "SELECT (SELECT COUNT(*) FROM rag_documents), (SELECT COUNT(*) FROM rag_chunks)"
            ).fetchone()
        )
        return (int(row[0]), int(row[1])) if row else (0, 0)

    async def close(self) -> None:
        try:
            if self._reader is not self._writer:
                await self._reader.close()
        finally:
            await self._writer.close()
