"""PostgreSQL search on its postings table and the exact vector search on an in-process matrix.

Real PostgreSQL (TOKENRELAY_TEST_DATABASE_URL), one schema per test (conftest.py); the SQLite
store is the reference the PostgreSQL store must rank like.
"""

from __future__ import annotations

import random
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.conftest import postgres_url
from tests.retrieval.semantic_helpers import TrigramEmbedder, trigram_vector
from tests.retrieval.test_exact import assert_in_step
from tokenrelay.retrieval.analysis import analyze
from tokenrelay.retrieval.base import DocumentStore
from tokenrelay.retrieval.hybrid import HybridStore
from tokenrelay.retrieval.ingest import ingest_text, prepare_text, store_prepared
from tokenrelay.retrieval.pg_postings import postings
from tokenrelay.retrieval.postgres import PostgresDocumentStore, _v1
from tokenrelay.retrieval.sqlite_fts import SqliteDocumentStore
from tokenrelay.retrieval.vector_postgres import PostgresVectorIndex

pytestmark = pytest.mark.postgres


def _corpus() -> list[str]:
    """Every chunk holds 'seoul'; the rarer words decide; Korean too."""
    rng = random.Random(11)
    words = ["palace", "market", "museum", "river", "tower", "garden", "temple", "bridge"]
    korean = ["경복궁의", "시장에서", "박물관은", "한강을", "남산타워", "정원의"]
    docs = []
    for i in range(80):
        body = " ".join(["seoul", *rng.choices(words[: 2 + i % 7], k=25)])
        extra = " ".join(rng.choices(korean[: 1 + i % 6], k=6)) if i % 3 == 0 else ""
        docs.append(f"# Guide {i}\n\n## Part {i % 4}\n\n{body}. {extra}\n")
    docs.append("# Hanok\n\nSeoul hanok village with a tea house and a seoul palace view.\n")
    return docs


QUERIES = (
    "seoul hanok palace",
    "tea house in seoul",
    "temple bridge seoul",
    "경복궁의 정원",
    "한강을 따라 남산타워",
    "museum of the river",
)


async def _both(pg: PostgresDocumentStore, tmp_path: Path) -> SqliteDocumentStore:
    sqlite = await SqliteDocumentStore.open(tmp_path / "ref.sqlite3")
    items = [prepare_text(t, source=f"{i}.md") for i, t in enumerate(_corpus())]
    await store_prepared(sqlite, items)
    await store_prepared(pg, items)
    return sqlite


def _same_ranking(a: list[Any], b: list[Any]) -> None:
    """Same chunks, same BM25 scores (to float rounding), in the same order up to exact ties."""
    assert [round(h.score, 6) for h in a] == [round(h.score, 6) for h in b]
    assert {h.id for h in a} == {h.id for h in b} or len(a) == 0
    for x, y in zip(a, b, strict=True):
        if x.id != y.id:  # only a tie may swap two chunks
            assert abs(x.score - y.score) < 1e-9


async def test_postgres_bm25_equals_sqlite_fts5(pg: PostgresDocumentStore, tmp_path: Path) -> None:
    sqlite = await _both(pg, tmp_path)
    try:
        for query in QUERIES:
            ours = await pg.search(query, top_k=8)
            reference = await sqlite.search(query, top_k=8)
            assert ours, query
            _same_ranking(ours, reference)
    finally:
        await sqlite.close()


async def test_bounded_postgres_search_equals_bounded_sqlite(
    pg: PostgresDocumentStore, tmp_path: Path
) -> None:
    sqlite = await _both(pg, tmp_path)
    try:
        for budget in (1, 30):  # only the rarest terms select; every term rescores
            pg.postings_budget = sqlite.postings_budget = budget
            for query in QUERIES:
                _same_ranking(await pg.search(query, top_k=5), await sqlite.search(query, 5))
        pg.postings_budget = 1
        assert (await pg.search("seoul hanok palace", top_k=1))[0].title == "Hanok"
    finally:
        await sqlite.close()


async def test_rerank_on_postgres_equals_sqlite(pg: PostgresDocumentStore, tmp_path: Path) -> None:
    sqlite = await _both(pg, tmp_path)
    pg.rerank = sqlite.rerank = True
    try:
        for query in QUERIES:
            _same_ranking(await pg.search(query, top_k=5), await sqlite.search(query, top_k=5))
    finally:
        await sqlite.close()


async def _postings(store: PostgresDocumentStore) -> list[tuple[str, int, int, int]]:
    rows = await store.pool.fetch("SELECT term, seq, tf, len FROM rag_postings ORDER BY 1, 2")
    return [tuple(r) for r in rows]


async def _expected_postings(store: PostgresDocumentStore) -> list[tuple[str, int, int, int]]:
    out = []
    for r in await store.pool.fetch("SELECT seq, head_terms, body_terms FROM rag_chunks"):
        length = len(r["head_terms"]) + len(r["body_terms"])
        out += [
            (t, r["seq"], tf, length)
            for t, tf in postings(r["head_terms"], r["body_terms"]).items()
        ]
    return sorted(out)


async def test_postings_follow_updates_and_deletes(pg: PostgresDocumentStore) -> None:
    first = await ingest_text(pg, "# Tea\n\nGreen tea and black tea.\n", source="tea.md")
    await ingest_text(pg, "# River\n\nThe river runs past the tea house.\n", source="river.md")
    assert await _postings(pg) == await _expected_postings(pg)
    await ingest_text(pg, "# Tea\n\nOolong only.\n", source="tea.md")  # replaces the first
    assert await _postings(pg) == await _expected_postings(pg)
    assert await pg.search("green black") == []  # the replaced chunk's postings are gone
    assert await pg.delete_document(first.document.id)
    assert await _postings(pg) == await _expected_postings(pg)
    assert await pg.search("oolong") == []


async def test_migration_2_indexes_the_rows_stored_before_it() -> None:
    """A schema at version 1 (tsvector, pg_trgm) with documents in it is migrated: postings
    are built from the stored terms and search finds what a fresh store finds."""
    url = postgres_url()
    schema = f"rag_mig_{uuid.uuid4().hex[:10]}"
    texts = _corpus()[:20] + _corpus()[-1:]
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f"CREATE SCHEMA {schema}")
        await conn.execute(f"SET search_path = {schema}, public")
        await _v1(conn)
        await conn.execute("CREATE TABLE retrieval_schema_version (version INT)")
        await conn.execute("INSERT INTO retrieval_schema_version VALUES (1)")
        for i, text in enumerate(texts):  # rows as version 1 wrote them
            prepared = prepare_text(text, source=f"{i}.md")
            doc = prepared.document
            await conn.execute(
                "INSERT INTO rag_documents (id, title, source, content_hash, chunk_count,"
                " created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 0, 0)",
                doc.id,
                doc.title,
                doc.source,
                doc.content_hash,
                len(prepared.chunks),
            )
            for c in prepared.chunks:
                head, body = analyze(f"{doc.title}\n{c.heading}"), analyze(c.text)
                await conn.execute(
                    "INSERT INTO rag_chunks (id, document_id, ordinal, heading, text, head_terms,"
                    " body_terms, tsv) VALUES ($1, $2, $3, $4, $5, $6, $7,"
                    " array_to_tsvector($6) || array_to_tsvector($7))",
                    c.id,
                    doc.id,
                    c.ordinal,
                    c.heading,
                    c.text,
                    head,
                    body,
                )
                await conn.execute(
                    "INSERT INTO rag_terms (term, df) SELECT t, 1 FROM unnest($1::text[]) AS t"
                    " ON CONFLICT (term) DO UPDATE SET df = rag_terms.df + 1",
                    sorted(set(head) | set(body)),
                )
                await conn.execute(
                    "UPDATE rag_stats SET chunks = chunks + 1, terms = terms + $1",
                    len(head) + len(body),
                )
    finally:
        await conn.close()
    migrated = await PostgresDocumentStore.open(url, schema=schema, max_size=2)
    fresh_schema = f"rag_mig_{uuid.uuid4().hex[:10]}"
    fresh = await PostgresDocumentStore.open(url, schema=fresh_schema, max_size=2)
    try:
        version = await migrated.pool.fetchval("SELECT version FROM retrieval_schema_version")
        assert version == 2
        assert await _postings(migrated) == await _expected_postings(migrated)
        columns = await migrated.pool.fetch(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = $1 AND table_name = 'rag_chunks'",
            schema,
        )
        assert "tsv" not in {r["column_name"] for r in columns}
        await store_prepared(
            fresh, [prepare_text(t, source=f"{i}.md") for i, t in enumerate(texts)]
        )
        for query in QUERIES:
            _same_ranking(await migrated.search(query, 5), await fresh.search(query, 5))
    finally:
        for store, name in ((migrated, schema), (fresh, fresh_schema)):
            await store.pool.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
            await store.close()


# -- the exact vector search: an in-process matrix kept in step with the table


async def _index(store: DocumentStore, **kwargs: Any) -> PostgresVectorIndex:
    assert isinstance(store, PostgresDocumentStore)
    index = await PostgresVectorIndex.open(store.pool, use_pgvector=False)
    if kwargs.get("in_memory") is False:
        index = PostgresVectorIndex(store.pool, pgvector=False, in_memory=False)
    return index


async def test_matrix_search_equals_the_sql_scan_and_follows_other_writers(
    pg: PostgresDocumentStore,
) -> None:
    index = await _index(pg)
    other = await _index(pg)  # another replica or a CLI ingest, with its own matrix
    in_sql = await _index(pg, in_memory=False)
    assert index.in_memory and not in_sql.in_memory and index.exact
    embedder = TrigramEmbedder()
    model = embedder.model
    texts = [f"# Note {i}\n\n{' '.join(random.Random(i).sample(_WORDS, 6))}\n" for i in range(40)]
    for text in texts[:20]:
        await ingest_text(HybridStore(pg, index, embedder), text)
    question = trigram_vector("palace garden tea")

    async def both(k: int) -> tuple[list[Any], list[Any]]:
        return await index.search(question, model, k), await in_sql.search(question, model, k)

    mine, reference = await both(5)
    _same_vectors(mine, reference)
    for text in texts[20:]:  # written by the other index: this matrix appends them
        await ingest_text(HybridStore(pg, other, embedder), text)
    mine, reference = await both(8)
    _same_vectors(mine, reference)
    # replaced and deleted documents: rows leave the matrix
    replaced = await ingest_text(
        HybridStore(pg, other, embedder), "# Note 3\n\npalace garden tea", source="note3.md"
    )
    hits = await index.search(question, model, 3)
    assert hits[0].document_id == replaced.document.id
    for hit in (await in_sql.search(question, model, 40))[:10]:
        await HybridStore(pg, other, embedder).delete_document(hit.document_id)
    mine, reference = await both(10)
    _same_vectors(mine, reference)
    have, total = await index.count(model)
    assert have == total
    matrix = index._matrices[(model, len(question))]
    assert len(matrix.rids) == have  # what was deleted left the matrix
    if matrix.rows.codes is not None:  # the int8 copy followed the appends and deletions
        assert_in_step(matrix.rows)
    await index.close()
    await other.close()


_WORDS = [
    "palace",
    "garden",
    "tea",
    "river",
    "market",
    "museum",
    "tower",
    "bridge",
    "temple",
    "hanok",
    "coffee",
    "shot",
]


def _same_vectors(a: list[Any], b: list[Any]) -> None:
    """Same scores (float32 in numpy, float4 products summed in SQL); ids equal but for ties."""
    assert a and len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.score == pytest.approx(y.score, abs=1e-5)
        if x.id != y.id:
            assert [h.score for h in a].count(x.score) > 1 or any(
                abs(h.score - x.score) < 1e-5 for h in a if h.id != x.id
            ), (x, y)
