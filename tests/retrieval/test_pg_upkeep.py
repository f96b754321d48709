"""The PostgreSQL store keeps its search tables' statistics fresh itself (pg_upkeep.py): after
bulk writes, and at start when they were never analysed. Real PostgreSQL, a schema per test."""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import postgres_url
from tests.retrieval.conftest import _postgres_store
from tokenrelay.retrieval.base import Chunk, Document
from tokenrelay.retrieval.pg_upkeep import Upkeep, due
from tokenrelay.retrieval.postgres import PostgresDocumentStore

pytestmark = pytest.mark.postgres


def test_due_after_the_larger_of_a_floor_and_a_share_of_the_table() -> None:
    assert not due(49_999, 0)
    assert due(50_000, 0)
    assert not due(199_999, 1_000_000)
    assert due(200_000, 1_000_000)
    assert due(3, 10, min_rows=2, fraction=0.1)


def _docs(n: int, start: int = 0) -> list[tuple[Document, list[Chunk]]]:
    items = []
    for i in range(start, start + n):
        text = f"alpha beta gamma delta {i} 경찰 영장 수색 주거 {i * 7}"
        doc = Document(id=f"d{i}", title=f"doc {i}", content_hash=f"h{i}", char_count=len(text))
        items.append((doc, [Chunk(f"d{i}:0", doc.id, 0, text, "", 0, len(text))]))
    return items


async def _stats(store: PostgresDocumentStore) -> tuple[object, object, object]:
    row = await store.pool.fetchrow(
        "SELECT last_vacuum, last_analyze, last_autoanalyze FROM pg_stat_user_tables"
        " WHERE schemaname = $1 AND relname = 'rag_postings'",
        store.schema,
    )
    assert row is not None
    return row["last_vacuum"], row["last_analyze"], row["last_autoanalyze"]


async def _analysed(store: PostgresDocumentStore) -> bool:
    for _ in range(50):  # the statistics views are updated a moment after the command
        vacuum, analyze, auto = await _stats(store)
        if (vacuum and analyze) or auto:
            return True
        await asyncio.sleep(0.1)
    return False


async def test_bulk_writes_are_followed_by_vacuum_analyze(pg: PostgresDocumentStore) -> None:
    pg.upkeep = Upkeep(pg.pool, pg.schema, min_rows=20, quiet_s=0.05)
    await pg.upsert_many(_docs(2))  # below the threshold: nothing runs
    assert pg.upkeep.runs == 0
    await pg.upsert_many(_docs(10, start=2))
    await pg.upkeep.idle()
    assert pg.upkeep.runs >= 1
    assert await _analysed(pg)
    # deletions count too: dead postings hide rows from index-only scans until VACUUM
    runs = pg.upkeep.runs
    for doc, _ in _docs(6):
        assert await pg.delete_document(doc.id)
    await pg.upkeep.idle()
    assert pg.upkeep.runs > runs
    assert [h.document_id for h in await pg.search("영장 gamma", top_k=3)]


async def test_a_store_opened_on_tables_changed_since_analysed_runs_it() -> None:
    """As after a load by another process (`tokenrelay ingest`) that did not vacuum."""
    async for first in _postgres_store():
        assert isinstance(first, PostgresDocumentStore)
        first.upkeep = Upkeep(first.pool, first.schema, min_rows=10**9)
        await first.upsert_many(_docs(5))
        await asyncio.sleep(1.2)  # the statistics views count the inserts (flushed each second)
        analysed_before = any(await _stats(first))  # only if autovacuum came by
        second = await PostgresDocumentStore.open(postgres_url(), schema=first.schema, max_size=2)
        try:
            await second.upkeep.idle()
            assert second.upkeep.runs == 1 or analysed_before
            assert await _analysed(second)
        finally:
            await second.close()


async def test_closing_finishes_a_pending_run(pg: PostgresDocumentStore) -> None:
    """A CLI ingest exits right after its writes: the run still happens, at once."""
    pg.upkeep = Upkeep(pg.pool, pg.schema, min_rows=5, quiet_s=3600)
    await pg.upsert_many(_docs(4))
    assert pg.upkeep.runs == 0
    await pg.upkeep.close()
    assert pg.upkeep.runs == 1
