"""Pick the DocumentStore from the settings: PostgreSQL when configured, else SQLite."""

from __future__ import annotations

from tokenrelay.config import Settings
from tokenrelay.retrieval.base import DocumentStore
from tokenrelay.retrieval.postgres import PostgresDocumentStore
from tokenrelay.retrieval.sqlite_fts import SqliteDocumentStore


async def open_document_store(settings: Settings) -> DocumentStore:
    """PostgreSQL at `settings.database_url` if set, else SQLite FTS5 at `settings.sqlite_path`."""
    if settings.database_url:
        return await PostgresDocumentStore.open(
            settings.database_url, rerank=settings.rag_rerank, schema=settings.database_schema
        )

    return await SqliteDocumentStore.open(settings.sqlite_path, rerank=settings.rag_rerank)
