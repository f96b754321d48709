"""The `store` fixture: each session-store test runs on real SQLite and real PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import postgres_url, unavailable
from tokenrelay.sessions.base import SessionStore


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SessionStore]:
    if request.param == "sqlite":
        from tokenrelay.sessions.sqlite import SQLiteSessionStore

        sqlite = await SQLiteSessionStore.open(tmp_path / "s.sqlite3")
        yield sqlite
        await sqlite.aclose()
        return
    import asyncpg

    from tokenrelay.sessions.postgres import PostgresSessionStore

    url = postgres_url()
    try:
        admin = await asyncpg.connect(url, timeout=5)
    except Exception as exc:
        unavailable("PostgreSQL", exc)
    schema = f"trtest_{uuid.uuid4().hex[:10]}"
    postgres = await PostgresSessionStore.open(url, schema=schema)
    try:
        yield postgres
    finally:
        await postgres.aclose()
        await admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await admin.close()
