"""Batched writes (`upsert_many`, `ingest_paths`) on both stores, and the SQLite term counts."""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path

from tokenrelay.retrieval.base import BatchingStore, DocumentStore
from tokenrelay.retrieval.ingest import (
    ingest_paths,
    ingest_text,
    prepare_text,
    store_prepared,
)
from tokenrelay.retrieval.owned import scoped_store
from tokenrelay.retrieval.sqlite_fts import SqliteDocumentStore

PALACE = "# 경복궁\n\n경복궁의 입장료는 3,000원입니다. 화요일은 휴궁합니다.\n"
MUSEUM = "# Museum\n\nThe museum opens at 10:00. Admission is free.\n"


async def test_upsert_many_statuses_in_order(store: DocumentStore) -> None:
    assert isinstance(store, BatchingStore)
    palace = prepare_text(PALACE, "궁궐")
    museum = prepare_text(MUSEUM, "Museum")
    first = await store_prepared(store, [palace, museum, palace])
    assert [r.status for r in first] == ["created", "created", "unchanged"]
    again = await store_prepared(store, [museum, palace])
    assert [r.status for r in again] == ["unchanged", "unchanged"]
    assert await store.count() == (2, len(palace.chunks) + len(museum.chunks))
    assert [c.id for c in await store.get_chunks(palace.document.id)] == [
        c.id for c in palace.chunks
    ]


async def test_same_id_twice_in_one_batch_keeps_the_last(store: DocumentStore) -> None:
    old = prepare_text(PALACE, "궁궐", "palace.md")
    new = prepare_text(PALACE.replace("3,000원", "5,000원"), "궁궐", "palace.md")
    results = await store_prepared(store, [old, new])
    assert [r.status for r in results] == ["created", "updated"]
    assert await store.count() == (1, len(new.chunks))
    hits = await store.search("경복궁 입장료", top_k=1)
    assert "5,000원" in hits[0].text


async def test_ingest_paths_in_many_small_batches(store: DocumentStore, tmp_path: Path) -> None:
    for i in range(5):
        (tmp_path / f"doc{i}.md").write_text(f"# Guide {i}\n\nMuseum number {i} opens.\n", "utf-8")
    report = await ingest_paths(store, [tmp_path], batch_chars=1)
    assert report.counts()["created"] == 5
    again = await ingest_paths(store, [tmp_path])
    assert again.counts()["unchanged"] == 5
    assert (await store.count())[0] == 5


def _recount(path: Path) -> tuple[dict[str, int], tuple[int, int]]:
    """(rag_terms as stored, (chunks, terms) as stored), after checking both against the index."""
    conn = sqlite3.connect(path)
    try:
        df: Counter[str] = Counter()
        chunks = terms = 0
        for head, body in conn.execute("SELECT head, body FROM rag_chunks_fts"):
            df.update(set(head.split()) | set(body.split()))
            chunks += 1
            terms += len(head.split()) + len(body.split())
        stored = dict(conn.execute("SELECT term, df FROM rag_terms"))
        stats = conn.execute("SELECT chunks, terms FROM rag_stats").fetchone()
        assert stored == dict(df)
        assert (stats[0], stats[1]) == (chunks, terms)
        return stored, (chunks, terms)
    finally:
        conn.close()


async def test_term_counts_follow_updates_and_deletes(tmp_path: Path) -> None:
    path = tmp_path / "t.sqlite3"
    store = await SqliteDocumentStore.open(path)
    try:
        palace = await ingest_text(store, PALACE, "궁궐", "palace.md")
        await ingest_text(store, MUSEUM, "Museum")
        _recount(path)
        await ingest_text(store, PALACE + "\n## 광화문\n\n수문장 교대식\n", "궁궐", "palace.md")
        _recount(path)
        assert await store.delete_document(palace.document.id)
        stored, (chunks, _) = _recount(path)
        assert "경복" not in stored and chunks == 1
    finally:
        await store.close()


async def test_migration_backfills_term_counts(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    store = await SqliteDocumentStore.open(path)
    await ingest_text(store, PALACE, "궁궐")
    await ingest_text(store, MUSEUM, "Museum")
    await store.close()
    conn = sqlite3.connect(path)  # back to schema version 1, as written before rag_terms
    conn.executescript(
        "DROP TABLE rag_terms; DROP TABLE rag_stats;"
        " UPDATE retrieval_schema_version SET version = 1;"
    )
    conn.close()
    store = await SqliteDocumentStore.open(path)
    try:
        stored, (chunks, _) = _recount(path)
        assert chunks == 2 and stored["museum"] == 1
        assert (await store.search("museum", top_k=1))[0].title == "Museum"
    finally:
        await store.close()


async def test_postgres_term_counts_follow_batches(store: DocumentStore) -> None:
    from tokenrelay.retrieval.postgres import PostgresDocumentStore

    if not isinstance(store, PostgresDocumentStore):
        return  # SQLite: test_term_counts_follow_updates_and_deletes
    palace = prepare_text(PALACE, "궁궐", "palace.md")
    edited = prepare_text(PALACE + "\n## 광화문\n\n수문장 교대식\n", "궁궐", "palace.md")
    await store_prepared(store, [palace, prepare_text(MUSEUM, "Museum"), edited])
    await store.delete_document(prepare_text(MUSEUM, "Museum").document.id)
    async with store._pool.acquire() as conn:
        expected: Counter[str] = Counter()
        for r in await conn.fetch("SELECT head_terms, body_terms FROM rag_chunks"):
            expected.update(set(r["head_terms"]) | set(r["body_terms"]))
        stored = {r["term"]: r["df"] for r in await conn.fetch("SELECT term, df FROM rag_terms")}
        stats = await conn.fetchrow("SELECT chunks FROM rag_stats")
    assert {t: n for t, n in stored.items() if n} == dict(expected)
    assert stats["chunks"] == len(edited.chunks)


async def test_owner_view_batches_under_its_prefix(store: DocumentStore) -> None:
    mine = scoped_store(store, "alice")
    assert isinstance(mine, BatchingStore)
    palace = prepare_text(PALACE, "궁궐")
    results = await store_prepared(mine, [palace, prepare_text(MUSEUM, "Museum"), palace])
    assert [r.status for r in results] == ["created", "created", "unchanged"]
    assert await store.get_document(f"alice::{palace.document.id}") is not None
    assert [d.id for d in await mine.list_documents()].count(palace.document.id) == 1
    assert await scoped_store(store, "bob").search("경복궁", top_k=3) == []
    assert (await mine.search("경복궁", top_k=1))[0].document_id == palace.document.id
