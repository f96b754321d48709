"""Lexical, semantic or hybrid search over a DocumentStore with a VectorIndex beside it.

`HybridStore` is a DocumentStore: it stores through the lexical store and keeps the vectors in
step, and it searches in the mode asked for:
- lexical: the store's BM25 search, as without embeddings;
- semantic: the question's vector against the chunks' vectors (cosine similarity);
- hybrid: both, fused by the measured rule of fusion.py (`FusionRule`).
The optional rerank (rerank.py) runs on the fused list, then the list is cut to top_k.
`min_score` is a floor on the BM25 score, so it filters the lexical side only.

Writes: the chunks without a vector for the configured model are embedded *before* anything is
written, so a failed embedding call fails the whole batch and leaves the index as it was. The
vectors are written after the store's transaction; if that write fails the chunks are simply
pending and `embed_pending` (run at start-up) fills them in.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from tokenrelay.retrieval.analysis import query_terms
from tokenrelay.retrieval.base import (
    BatchingStore,
    Chunk,
    Document,
    DocumentStore,
    SearchHit,
    UpsertStatus,
)
from tokenrelay.retrieval.embedding import Embedder, EmbeddingFailed
from tokenrelay.retrieval.fusion import FusionRule, fuse, with_ranks
from tokenrelay.retrieval.question_cache import QuestionCache
from tokenrelay.retrieval.rerank import candidate_count, rerank
from tokenrelay.retrieval.snippets import make_snippet
from tokenrelay.retrieval.vectors import VectorIndex, passage_text

logger = logging.getLogger("tokenrelay.retrieval")

RetrievalMode = Literal["lexical", "semantic", "hybrid"]
MODES: tuple[RetrievalMode, ...] = ("lexical", "semantic", "hybrid")
Progress = Callable[[int, int], None]  # (chunks with a vector, chunks in all)

# Set by a caller that shows ingest progress (the CLI's bar, the upload route's `progress`
# events): called with (chunks embedded, chunks to embed) of each stored batch, first with 0.
embedding_progress: ContextVar[Progress | None] = ContextVar("embedding_progress", default=None)


@dataclass(frozen=True)
class Retrieval:
    """The hits of one search and how they were found (the `retrieval` of `sources`)."""

    hits: list[SearchHit]
    mode: RetrievalMode
    lexical_found: int = 0
    vector_found: int = 0
    fused: int = 0  # distinct chunks after fusion
    reranked: bool = False
    fallback: str = ""  # why a semantic/hybrid search ran lexically

    def counts(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mode": self.mode,
            "found": {"lexical": self.lexical_found, "vector": self.vector_found},
            "fused": self.fused,
            "reranked": self.reranked,
            "returned": len(self.hits),
        }
        if self.fallback:
            out["fallback"] = self.fallback
        return out


@runtime_checkable
class ModeSearch(Protocol):
    async def search_mode(
        self, query: str, top_k: int, min_score: float, mode: RetrievalMode | None
    ) -> Retrieval: ...


async def search_with_mode(
    store: DocumentStore, query: str, top_k: int, min_score: float, mode: RetrievalMode | None
) -> Retrieval:
    """Search `store` in `mode` (None: the store's default); a store without vectors is
    lexical whatever the mode, and says so in `fallback`."""
    if isinstance(store, ModeSearch):
        return await store.search_mode(query, top_k, min_score, mode)
    hits = await store.search(query, top_k=top_k, min_score=min_score)
    fallback = "" if mode in (None, "lexical") else "no embeddings are configured"
    return Retrieval(hits, "lexical", lexical_found=len(hits), fused=len(hits), fallback=fallback)


@dataclass
class HybridStore:
    store: DocumentStore
    index: VectorIndex
    embedder: Embedder
    default_mode: RetrievalMode = "hybrid"
    use_rerank: bool = False
    fusion: FusionRule = field(default_factory=FusionRule)
    _background: asyncio.Task[int] | None = field(default=None, init=False, repr=False)
    _questions: QuestionCache = field(default_factory=QuestionCache, init=False, repr=False)

    # -- writes
    async def _vectors_for(
        self, items: Sequence[tuple[Document, Sequence[Chunk]]]
    ) -> list[tuple[str, str, list[float]]]:
        wanted = {c.id: (d, c) for d, chunks in items for c in chunks}
        have = await self.index.has(list(wanted), self.embedder.model)
        todo = [
            (c, passage_text(d.title, c.heading, c.text))
            for cid, (d, c) in wanted.items()
            if cid not in have
        ]
        # texts of like length together: a server that pads a batch to its longest text wastes
        # less; rows are keyed by chunk id, so the order does not matter
        todo.sort(key=lambda item: len(item[1]))
        report = embedding_progress.get()
        if report is not None and todo:
            report(0, len(todo))
        rows: list[tuple[str, str, list[float]]] = []
        size = max(1, self.embedder.batch_size)
        for i in range(0, len(todo), size):
            part = todo[i : i + size]
            vectors = await self.embedder.embed([text for _, text in part])
            rows += [(c.id, c.document_id, v) for (c, _), v in zip(part, vectors, strict=True)]
            if report is not None:
                report(len(rows), len(todo))
        return rows

    async def upsert(self, document: Document, chunks: list[Chunk]) -> UpsertStatus:
        return (await self.upsert_many([(document, chunks)]))[0]

    async def upsert_many(
        self, items: Sequence[tuple[Document, Sequence[Chunk]]]
    ) -> list[UpsertStatus]:
        rows = await self._vectors_for(items)  # EmbeddingFailed here: nothing written
        if isinstance(self.store, BatchingStore):
            statuses = await self.store.upsert_many(items)
        else:
            statuses = [await self.store.upsert(d, list(c)) for d, c in items]
        try:
            await self._put(rows)
            replaced = [d.id for (d, _), s in zip(items, statuses, strict=True) if s == "updated"]
            await self.index.remove_orphans(replaced)
        except Exception:
            logger.exception("storing chunk vectors failed; they are embedded again at start-up")
        return statuses

    async def _put(self, rows: list[tuple[str, str, list[float]]]) -> None:
        if rows:
            await self.index.put(self.embedder.model, len(rows[0][2]), rows)

    async def delete_document(self, document_id: str) -> bool:
        deleted = await self.store.delete_document(document_id)
        if deleted:
            await self.index.remove_orphans([document_id])
        return deleted

    # -- searches
    async def search(self, query: str, top_k: int = 5, min_score: float = 0.0) -> list[SearchHit]:
        return (await self.search_mode(query, top_k, min_score, None)).hits

    async def search_mode(
        self, query: str, top_k: int, min_score: float, mode: RetrievalMode | None
    ) -> Retrieval:
        mode = mode or self.default_mode
        if top_k <= 0:
            return Retrieval([], mode)
        n = candidate_count(top_k)
        vector_hits: list[SearchHit] = []
        lexical_hits: list[SearchHit] = []
        fallback = ""

        def lexical() -> Awaitable[list[SearchHit]]:
            wide = mode == "hybrid" or self.use_rerank
            return self.store.search(query, top_k=n if wide else top_k, min_score=min_score)

        if mode == "hybrid":
            # the BM25 search runs on the store's thread while the question is embedded
            lexical_task = asyncio.ensure_future(lexical())
            try:
                vector_hits, fallback = await self._vector_side(query, n)
            finally:
                lexical_hits = await lexical_task
        elif mode == "semantic":
            vector_hits, fallback = await self._vector_side(query, n)
        searched = mode == "hybrid"  # the lexical side already ran
        if fallback:
            mode = "lexical"
        if mode == "lexical" and not searched:
            lexical_hits = await lexical()
        if mode == "lexical" and not fallback and not self.use_rerank:
            hits = lexical_hits[:top_k]
            return Retrieval(hits, mode, lexical_found=len(lexical_hits), fused=len(hits))
        terms = query_terms(query)
        if mode == "hybrid":
            ranked = fuse(lexical_hits, vector_hits, terms, self.fusion)
        elif mode == "semantic":
            ranked = with_ranks(vector_hits, lexical=False)
        else:
            ranked = list(lexical_hits)
        if self.use_rerank and ranked:
            ranked = rerank(terms, ranked)
        wanted = set(terms)
        hits = [
            dataclasses.replace(h, snippet=h.snippet or make_snippet(h.text, wanted))
            for h in ranked[:top_k]
        ]
        return Retrieval(
            hits,
            mode,
            lexical_found=len(lexical_hits),
            vector_found=len(vector_hits),
            fused=len(ranked),
            reranked=self.use_rerank,
            fallback=fallback,
        )

    async def _vector_side(self, query: str, n: int) -> tuple[list[SearchHit], str]:
        """(the `n` nearest chunks, ""), or ([], why) when the question cannot be embedded."""
        model = self.embedder.model
        try:
            question = self._questions.get(model, query)
            if question is None:
                [question] = await self.embedder.embed([query], kind="query")
                self._questions.put(model, query, question)
            return await self.index.search(question, model, n), ""
        except EmbeddingFailed as e:
            logger.warning("embedding the question failed, searching lexically: %s", e)
            return [], f"embedding the question failed: {e}"

    # -- re-embedding
    async def embed_pending(self, progress: Progress | None = None, batch: int = 256) -> int:
        """Embed every stored chunk that has no vector of the configured model; returns how
        many were embedded. Vectors of other models are removed once all are done."""
        model = self.embedder.model
        done = 0
        while True:
            pending = await self.index.pending(model, batch)
            if not pending:
                break
            size = max(1, self.embedder.batch_size)
            for i in range(0, len(pending), size):
                part = pending[i : i + size]
                vectors = await self.embedder.embed(
                    [passage_text(p.title, p.heading, p.text) for p in part]
                )
                await self._put(
                    [(p.chunk_id, p.document_id, v) for p, v in zip(part, vectors, strict=True)]
                )
                done += len(part)
                if progress is not None:
                    have, total = await self.index.count(model)
                    progress(have, total)
        removed = await self.index.remove_other_models(model)
        if removed:
            logger.info("removed %d vectors of earlier embedding models", removed)
        return done

    def start_embedding_pending(self) -> None:
        """`embed_pending` in the background, logging its progress (a changed model); then,
        when there are documents to search, the embedder warmed (`Embedder.warm`: the local
        model loads its engine, ~2 s) so that the first question does not wait for it."""

        def log(have: int, total: int) -> None:
            logger.info("embedding chunks for %s: %d/%d", self.embedder.model, have, total)

        async def run() -> int:
            try:
                done = await self.embed_pending(log)
                if (await self.store.count())[1]:
                    await self.embedder.warm()
                return done
            except EmbeddingFailed as e:
                logger.error("embedding the stored chunks failed: %s (%s)", e, e.suggestion)
                return 0

        self._background = asyncio.get_running_loop().create_task(run())

    # -- everything else is the lexical store's
    async def list_documents(self, limit: int = 100, offset: int = 0) -> list[Document]:
        return await self.store.list_documents(limit=limit, offset=offset)

    async def get_document(self, document_id: str) -> Document | None:
        return await self.store.get_document(document_id)

    async def get_chunks(self, document_id: str) -> list[Chunk]:
        return await self.store.get_chunks(document_id)

    async def count(self) -> tuple[int, int]:
        return await self.store.count()

    async def close(self) -> None:
        task = self._background
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        try:
            await self.index.close()
            await self.embedder.close()
        finally:
            await self.store.close()
