"""Store fixtures: the same contract runs on the real SQLite store and the real PostgreSQL store.

PostgreSQL: TOKENRELAY_TEST_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/test);
each test gets its own schema, dropped afterwards. Unreachable -> skip, unless CI is set.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import postgres_url
from tokenrelay.retrieval.base import DocumentStore
from tokenrelay.retrieval.postgres import PostgresDocumentStore
from tokenrelay.retrieval.sqlite_fts import SqliteDocumentStore


async def _postgres_store() -> AsyncIterator[DocumentStore]:
    import asyncpg

    from tokenrelay.errors import BackendUnavailable
    from tokenrelay.retrieval.postgres import PostgresDocumentStore

    url = postgres_url() or ""
    schema = f"rag_test_{uuid.uuid4().hex[:12]}"
    try:
        store = await PostgresDocumentStore.open(url, schema=schema, max_size=2)
    except BackendUnavailable as e:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL at {url} is required in CI: {e}")
        pytest.skip(f"PostgreSQL not reachable at {url} (set TOKENRELAY_TEST_DATABASE_URL): {e}")
    try:
        yield store
    finally:
        await store.close()
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        finally:
            await conn.close()


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[DocumentStore]:
    if request.param == "sqlite":
        sqlite = await SqliteDocumentStore.open(tmp_path / "tokenrelay.sqlite3")
        try:
            yield sqlite
        finally:
            await sqlite.close()
    else:
        async for pg in _postgres_store():
            yield pg


@pytest.fixture
async def pg() -> AsyncIterator[PostgresDocumentStore]:
    """The PostgreSQL store alone (its own schema, dropped afterwards)."""
    async for store in _postgres_store():
        assert isinstance(store, PostgresDocumentStore)
        yield store
