"""The VectorIndex protocol: chunk vectors beside the chunks, searched by cosine similarity.

Two implementations, each in the database its DocumentStore uses: `vector_sqlite.py` (the
sqlite-vec extension, in the same SQLite file) and `vector_postgres.py` (pgvector, or an exact
scan where the extension is not installed). Every vector row holds the model name and the
dimension that made it; searching asks for one model, so vectors of an old model are never
compared with a question embedded by the new one. Search joins the chunk tables, so a chunk
deleted by the store is never returned even before its vector is removed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from tokenrelay.retrieval.base import SearchHit
from tokenrelay.retrieval.embedding import Vector


@dataclass(frozen=True, slots=True)
class Pending:
    """A stored chunk that has no vector for the current model yet."""

    chunk_id: str
    document_id: str
    title: str
    heading: str
    text: str


def passage_text(title: str, heading: str, text: str) -> str:
    """What is embedded for a chunk: its document title and heading path give it context."""
    head = " > ".join(p for p in (title, heading) if p)
    return f"{head}\n{text}" if head else text


@runtime_checkable
class VectorIndex(Protocol):
    async def has(self, chunk_ids: Sequence[str], model: str) -> set[str]:
        """The ids among `chunk_ids` that already have a vector made by `model`."""
        ...

    async def put(
        self, model: str, dimension: int, rows: Sequence[tuple[str, str, Vector]]
    ) -> None:
        """Store (chunk id, document id, vector) rows made by `model`, replacing old ones."""
        ...

    async def remove_orphans(self, document_ids: Sequence[str]) -> int:
        """Forget the vectors of these documents' chunks that the store no longer holds."""
        ...

    async def remove_other_models(self, model: str) -> int:
        """Forget the vectors of every model but `model`; how many were removed."""
        ...

    async def search(self, vector: Vector, model: str, k: int) -> list[SearchHit]:
        """The `k` chunks nearest to `vector`, best first; score = cosine similarity."""
        ...

    async def pending(self, model: str, limit: int) -> list[Pending]:
        """Up to `limit` stored chunks with no vector made by `model`, oldest first."""
        ...

    async def count(self, model: str) -> tuple[int, int]:
        """(chunks with a vector of `model`, chunks in the store)."""
        ...

    @property
    def exact(self) -> bool:
        """True when search compares the question with every vector (no ANN index)."""
        ...

    async def close(self) -> None: ...
