"""The DocumentStore protocol and the records it stores and returns.

A `Document` is what the user loaded (title, source, metadata, full text); its `Chunk`s are
what is indexed and retrieved. Ids are content hashes (see `chunking.py`), so loading the same
content again finds the same ids and replaces instead of duplicating.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class Chunk:
    id: str
    document_id: str
    ordinal: int  # position in the document, 0-based
    text: str  # the passage itself
    heading: str = ""  # heading path, e.g. "Seoul > Palaces > Gyeongbokgung"
    start: int = 0  # character offset of the passage in the document text
    end: int = 0


@dataclass(frozen=True, slots=True)
class Document:
    id: str
    title: str
    source: str = ""  # file path, URL or "" for pasted text
    metadata: dict[str, Any] = field(default_factory=dict)
    content_hash: str = ""  # sha256 of the text: unchanged re-ingest is a no-op
    char_count: int = 0
    chunk_count: int = 0
    created_at: float = 0.0  # unix seconds
    updated_at: float = 0.0


@dataclass(frozen=True, slots=True)
class SearchHit:
    id: str  # chunk id
    document_id: str
    title: str  # document title
    snippet: str  # a short passage around the best match, for the `sources` event
    score: float  # higher is better; BM25 (optionally reranked)
    metadata: dict[str, Any] = field(default_factory=dict)  # document metadata + source, heading
    text: str = ""  # the whole chunk, for the prompt context
    heading: str = ""
    # semantic and hybrid searches (hybrid.py): where each retriever ranked the chunk (1 =
    # best) and its own score (BM25; cosine similarity); None: that retriever did not find it
    lexical_rank: int | None = None
    lexical_score: float | None = None
    vector_rank: int | None = None
    vector_score: float | None = None

    def to_source(self) -> dict[str, Any]:
        """The wire form of one entry of the `sources` event (DESIGN.md §3)."""
        source: dict[str, Any] = {
            "id": self.id,
            "title": self.title,
            "snippet": self.snippet,
            "score": round(self.score, 4),
            "metadata": self.metadata,
        }
        if self.lexical_rank is not None or self.vector_rank is not None:
            source["lexical_rank"] = self.lexical_rank
            source["lexical_score"] = _rounded(self.lexical_score)
            source["vector_rank"] = self.vector_rank
            source["vector_score"] = _rounded(self.vector_score)
        return source


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


UpsertStatus = Literal["created", "updated", "unchanged"]


@runtime_checkable
class DocumentStore(Protocol):
    """Where documents and their chunks live; SQLite FTS5 or PostgreSQL full-text."""

    async def upsert(self, document: Document, chunks: list[Chunk]) -> UpsertStatus:
        """Insert or replace `document` and all its chunks in one transaction."""
        ...

    async def search(self, query: str, top_k: int = 5, min_score: float = 0.0) -> list[SearchHit]:
        """Best chunks for `query`, best first, at most `top_k`, each scoring >= min_score."""
        ...

    async def list_documents(self, limit: int = 100, offset: int = 0) -> list[Document]: ...

    async def get_document(self, document_id: str) -> Document | None: ...

    async def get_chunks(self, document_id: str) -> list[Chunk]: ...

    async def delete_document(self, document_id: str) -> bool:
        """True when something was deleted."""
        ...

    async def count(self) -> tuple[int, int]:
        """(documents, chunks)."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class BatchingStore(Protocol):
    """A store that writes many documents in one transaction (both built-in stores do)."""

    async def upsert_many(
        self, items: Sequence[tuple[Document, Sequence[Chunk]]]
    ) -> list[UpsertStatus]:
        """Like `upsert` for each item, in order, as one transaction; the statuses in order."""
        ...
