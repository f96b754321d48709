"""The Embedder protocol: texts in, vectors out, batched, with the model's name and dimension.

Three implementations: any OpenAI-compatible `/v1/embeddings` server (`embed_openai.py`),
Gemini (`embed_gemini.py`) and the model run in-process (`embed_local.py`). A vector is always
stored with the `model` and `dimension` that made it (`vector_sqlite.py`, `vector_postgres.py`),
so a change of model is seen and the chunks are embedded again (`reembed.py`).

`kind` says what the text is: retrieval models embed a question and a passage differently
(E5 prefixes "query: " / "passage: ", Gemini has task types); a server that does not care
ignores it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, Protocol, runtime_checkable

from tokenrelay.errors import ProviderError, misconfigured
from tokenrelay.i18n import tr

EmbedKind = Literal["query", "passage"]
Vector = list[float]


@runtime_checkable
class Embedder(Protocol):
    @property
    def model(self) -> str:
        """The name stored beside every vector; a different name means embed again."""
        ...

    @property
    def dimension(self) -> int: ...

    @property
    def batch_size(self) -> int:
        """Texts per call to `embed` that the backend handles well."""
        ...

    async def embed(self, texts: Sequence[str], *, kind: EmbedKind = "passage") -> list[Vector]:
        """One unit-length vector per text, in order; EmbeddingFailed when the backend fails."""
        ...

    async def warm(self) -> None:
        """Get ready for the first `embed` (the local model loads its engine); called at
        start-up when there are documents to search."""
        ...

    async def close(self) -> None: ...


# what a user is told when the embedding model does not work (the fix is in details.operator)
EMBEDDINGS_DOWN = tr("documents cannot be indexed or searched by meaning on this server right now")


class EmbeddingFailed(ProviderError):
    """The embedding backend failed or answered something unusable."""


def normalized(vector: Sequence[float]) -> Vector:
    """`vector` scaled to unit length (cosine = dot product); a zero vector stays zero."""
    norm = math.sqrt(sum(x * x for x in vector))
    if norm == 0.0:
        return [float(x) for x in vector]
    return [float(x) / norm for x in vector]


def batches(texts: Sequence[str], size: int) -> list[Sequence[str]]:
    return [texts[i : i + size] for i in range(0, len(texts), max(1, size))]


def checked(vectors: list[Vector], count: int, dimension: int, model: str) -> list[Vector]:
    """The backend's answer, verified: one vector per text, each of the model's dimension."""
    if len(vectors) != count:
        raise misconfigured(
            EmbeddingFailed,
            EMBEDDINGS_DOWN,
            f"the embedding model {model} returned {len(vectors)} vectors for {count} texts:"
            " check that the embedding server implements /v1/embeddings fully",
        )
    for v in vectors:
        if len(v) != dimension:
            raise misconfigured(
                EmbeddingFailed,
                EMBEDDINGS_DOWN,
                f"the embedding model {model} returned a vector of dimension {len(v)},"
                f" not {dimension}: set TOKENRELAY_EMBEDDING_DIMENSIONS to the model's dimension",
            )
    return [normalized(v) for v in vectors]


class ServedEmbedder:
    """What the embedders of a server (OpenAI-compatible, Gemini) share: the model's name,
    its dimension (configured, or learned from the first answer) and the batch size; and the
    check of every answer against them."""

    def __init__(self, *, model: str, dimensions: int | None, batch_size: int) -> None:
        self._model = model
        self._dimensions = dimensions  # asked of the server; None: the model's own
        self._dimension = dimensions or 0  # known after the first answer when not configured
        self._batch_size = batch_size

    @property
    def model(self) -> str:
        return self._model

    @property
    def dimension(self) -> int:
        return self._dimension

    @property
    def batch_size(self) -> int:
        return self._batch_size

    async def warm(self) -> None:
        """Nothing to load: the server holds the model."""
        return None

    def _accepted(self, vectors: list[Vector], count: int) -> list[Vector]:
        """The server's answer to `count` texts, `checked` (the first answer sets the
        dimension when none was configured)."""
        if not self._dimension and vectors:
            self._dimension = len(vectors[0])
        return checked(vectors, count, self._dimension, self._model)
