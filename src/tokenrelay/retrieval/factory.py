"""Pick the DocumentStore from the settings: PostgreSQL when configured, else SQLite; with an
embedder configured, wrapped in a HybridStore with the vector index beside it."""

from __future__ import annotations

import logging

from tokenrelay.config import Settings
from tokenrelay.errors import TokenRelayError
from tokenrelay.retrieval.base import DocumentStore
from tokenrelay.retrieval.embedding import Embedder
from tokenrelay.retrieval.fusion import FusionRule
from tokenrelay.retrieval.hybrid import HybridStore
from tokenrelay.retrieval.postgres import PostgresDocumentStore
from tokenrelay.retrieval.sqlite_fts import SqliteDocumentStore
from tokenrelay.retrieval.vectors import VectorIndex

logger = logging.getLogger("tokenrelay.retrieval")


def fusion_rule(settings: Settings) -> FusionRule:
    return FusionRule(k=settings.rag_rrf_k, min_coverage=settings.rag_fusion_min_coverage)


def open_embedder(settings: Settings) -> Embedder | None:
    """The configured embedder; None for `none`, or (logged) when it cannot be built."""
    provider = settings.embedding_provider
    if provider == "none":
        return None
    key = settings.embedding_api_key
    try:
        if provider == "local":
            try:
                from tokenrelay.retrieval.embed_local import LocalEmbedder
            except ImportError as e:  # an install without the `local` extra (numpy, ...)
                logger.warning(
                    "embeddings (local, the default) are off, retrieval is lexical only: %s;"
                    " pip install 'tokenrelay[local]', or set TOKENRELAY_EMBEDDING_PROVIDER=none",
                    e,
                )
                return None
            return LocalEmbedder(
                batch_size=settings.embedding_batch_size,
                threads=settings.embedding_threads,
                language_neutral=settings.embedding_language_neutral,
            )
        if provider == "openai":
            from tokenrelay.retrieval.embed_openai import DEFAULT_MODEL, OpenAIEmbedder

            key = key or settings.openai_api_key
            return OpenAIEmbedder(
                model=settings.embedding_model or DEFAULT_MODEL,
                api_key=key.get_secret_value() if key is not None else None,
                base_url=settings.embedding_base_url or settings.openai_base_url,
                dimensions=settings.embedding_dimensions,
                batch_size=settings.embedding_batch_size,
                timeout_s=settings.provider_timeout_s,
                max_retries=settings.provider_max_retries,
            )
        from tokenrelay.retrieval.embed_gemini import DEFAULT_MODEL as GEMINI_MODEL
        from tokenrelay.retrieval.embed_gemini import GeminiEmbedder

        key = key or settings.gemini_api_key
        return GeminiEmbedder(
            api_key=key.get_secret_value() if key is not None else None,
            model=settings.embedding_model or GEMINI_MODEL,
            base_url=settings.embedding_base_url or settings.gemini_base_url,
            dimensions=settings.embedding_dimensions,
            batch_size=min(settings.embedding_batch_size, 100),
            timeout_s=settings.provider_timeout_s,
            max_retries=settings.provider_max_retries,
        )
    except TokenRelayError as e:
        logger.warning(
            "embeddings (%s) are off, retrieval is lexical only: %s %s",
            provider,
            e,
            e.suggestion,
        )
        return None


async def open_document_store(settings: Settings) -> DocumentStore:
    """PostgreSQL at `settings.database_url` if set, else SQLite FTS5 at `settings.sqlite_path`;
    with embeddings (`settings.embedding_provider`), a HybridStore over it."""
    embedder = open_embedder(settings)
    # with embeddings the rerank runs on the fused list (hybrid.py), not inside the store
    inner_rerank = settings.rag_rerank and embedder is None
    store: SqliteDocumentStore | PostgresDocumentStore
    index: VectorIndex
    try:
        if settings.database_url:
            store = await PostgresDocumentStore.open(
                settings.database_url, rerank=inner_rerank, schema=settings.database_schema
            )
            if embedder is None:
                return store
            from tokenrelay.retrieval.vector_postgres import PostgresVectorIndex

            index = await PostgresVectorIndex.open(store.pool, schema=settings.database_schema)
        else:
            store = await SqliteDocumentStore.open(settings.sqlite_path, rerank=inner_rerank)
            if embedder is None:
                return store
            from tokenrelay.retrieval.vector_sqlite import SqliteVectorIndex

            index = await SqliteVectorIndex.open(settings.sqlite_path)
    except TokenRelayError as e:
        if embedder is None:
            raise
        await embedder.close()
        logger.warning("vector search is off, retrieval is lexical only: %s %s", e, e.suggestion)
        store.rerank = settings.rag_rerank
        return store
    hybrid = HybridStore(
        store,
        index,
        embedder,
        default_mode=settings.retrieval_mode,
        use_rerank=settings.rag_rerank,
        fusion=fusion_rule(settings),
    )
    hybrid.start_embedding_pending()
    return hybrid
