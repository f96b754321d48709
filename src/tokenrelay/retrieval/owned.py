"""Documents that belong to an API key: a view of a DocumentStore scoped to one owner.

With API keys on (docs/security.md), each key sees only the documents it loaded. The stores
need no owner column: the view stores a key's documents and chunks under ids prefixed with
`<owner>::` (owner ids never hold ':'), so two keys loading the same text get two documents,
and strips the prefix from everything it returns. Ids a client sends are always prefixed
with the caller's owner, so no id can reach another key's document.

Costs of doing it outside the stores, until they gain an owner column: search asks the store
for more candidates than `top_k` and keeps the owner's (widening while it finds too few), and
listing and counting walk the document table. Documents loaded without a key (CLI `ingest`,
or the API with keys off) belong to nobody and are not visible to keys.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from tokenrelay.retrieval.base import (
    BatchingStore,
    Chunk,
    Document,
    DocumentStore,
    SearchHit,
    UpsertStatus,
)
from tokenrelay.retrieval.hybrid import Retrieval, RetrievalMode, search_with_mode

SEPARATOR = "::"
_PAGE = 500
_MAX_CANDIDATES = 2000


def scoped_store(store: DocumentStore, owner: str | None) -> DocumentStore:
    """`store` itself when there is no owner (keys off), else the owner's view of it."""
    if owner is None:
        return store
    return OwnedDocumentStore(store, owner)


class OwnedDocumentStore:
    def __init__(self, store: DocumentStore, owner: str) -> None:
        if SEPARATOR in owner or not owner:
            raise ValueError(f"owner id {owner!r} must be non-empty and hold no {SEPARATOR!r}")
        self._store = store
        self._prefix = f"{owner}{SEPARATOR}"

    def _inner(self, item_id: str) -> str:
        return self._prefix + item_id

    def _outer(self, item_id: str) -> str:
        return item_id[len(self._prefix) :]

    def _mine(self, item_id: str) -> bool:
        return item_id.startswith(self._prefix)

    def _doc_out(self, doc: Document) -> Document:
        return dataclasses.replace(doc, id=self._outer(doc.id))

    def _chunk_out(self, chunk: Chunk) -> Chunk:
        return dataclasses.replace(
            chunk, id=self._outer(chunk.id), document_id=self._outer(chunk.document_id)
        )

    async def upsert(self, document: Document, chunks: list[Chunk]) -> UpsertStatus:
        inner_doc = dataclasses.replace(document, id=self._inner(document.id))
        inner_chunks = [
            dataclasses.replace(c, id=self._inner(c.id), document_id=self._inner(c.document_id))
            for c in chunks
        ]
        return await self._store.upsert(inner_doc, inner_chunks)

    async def upsert_many(
        self, items: Sequence[tuple[Document, Sequence[Chunk]]]
    ) -> list[UpsertStatus]:
        """The owner's batch as one transaction when the store batches (ingest.store_prepared)."""
        inner = [
            (
                dataclasses.replace(d, id=self._inner(d.id)),
                [
                    dataclasses.replace(
                        c, id=self._inner(c.id), document_id=self._inner(c.document_id)
                    )
                    for c in chunks
                ],
            )
            for d, chunks in items
        ]
        if isinstance(self._store, BatchingStore):
            return await self._store.upsert_many(inner)
        return [await self._store.upsert(d, c) for d, c in inner]

    async def search(self, query: str, top_k: int = 5, min_score: float = 0.0) -> list[SearchHit]:
        if top_k <= 0:
            return []
        fetch = max(4 * top_k, 20)
        while True:
            hits = await self._store.search(query, top_k=fetch, min_score=min_score)
            mine = [h for h in hits if self._mine(h.document_id)]
            if len(mine) >= top_k or len(hits) < fetch or fetch >= _MAX_CANDIDATES:
                break
            fetch = min(fetch * 4, _MAX_CANDIDATES)
        return [
            dataclasses.replace(h, id=self._outer(h.id), document_id=self._outer(h.document_id))
            for h in mine[:top_k]
        ]

    async def search_mode(
        self, query: str, top_k: int, min_score: float, mode: RetrievalMode | None
    ) -> Retrieval:
        """`search` in a retrieval mode (hybrid.py), widening the same way."""
        if top_k <= 0:
            return await search_with_mode(self._store, query, 0, min_score, mode)
        fetch = max(4 * top_k, 20)
        while True:
            found = await search_with_mode(self._store, query, fetch, min_score, mode)
            mine = [h for h in found.hits if self._mine(h.document_id)]
            if len(mine) >= top_k or len(found.hits) < fetch or fetch >= _MAX_CANDIDATES:
                break
            fetch = min(fetch * 4, _MAX_CANDIDATES)
        hits = [
            dataclasses.replace(h, id=self._outer(h.id), document_id=self._outer(h.document_id))
            for h in mine[:top_k]
        ]
        return dataclasses.replace(found, hits=hits)

    async def _all_mine(self, stop_after: int | None = None) -> list[Document]:
        found: list[Document] = []
        offset = 0
        while stop_after is None or len(found) < stop_after:
            page = await self._store.list_documents(limit=_PAGE, offset=offset)
            found += [d for d in page if self._mine(d.id)]
            if len(page) < _PAGE:
                break
            offset += _PAGE
        return found

    async def list_documents(self, limit: int = 100, offset: int = 0) -> list[Document]:
        mine = await self._all_mine(stop_after=offset + limit)
        return [self._doc_out(d) for d in mine[offset : offset + limit]]

    async def get_document(self, document_id: str) -> Document | None:
        doc = await self._store.get_document(self._inner(document_id))
        return self._doc_out(doc) if doc is not None else None

    async def get_chunks(self, document_id: str) -> list[Chunk]:
        return [self._chunk_out(c) for c in await self._store.get_chunks(self._inner(document_id))]

    async def delete_document(self, document_id: str) -> bool:
        return await self._store.delete_document(self._inner(document_id))

    async def count(self) -> tuple[int, int]:
        mine = await self._all_mine()
        return len(mine), sum(d.chunk_count for d in mine)

    async def close(self) -> None:
        """The view does not own the store; closing it closes nothing."""
