"""A small deterministic embedding for tests: hashed character trigrams, unit length.

Texts that share trigrams are near; it stands in for a model where the test is about the
plumbing (the index, the fusion, the wire formats), never about meaning.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from tokenrelay.retrieval.embedding import EmbedKind, Vector, normalized

DIM = 64


def trigram_vector(text: str, dim: int = DIM) -> Vector:
    v = [0.0] * dim
    t = f"  {text.lower()}  "
    for i in range(len(t) - 2):
        h = int.from_bytes(hashlib.blake2b(t[i : i + 3].encode(), digest_size=4).digest(), "big")
        v[h % dim] += 1.0
    return normalized(v)


class TrigramEmbedder:
    def __init__(self, model: str = "trigram-64", dim: int = DIM) -> None:
        self._model = model
        self._dim = dim
        self.calls: list[int] = []

    @property
    def model(self) -> str:
        return self._model

    @property
    def dimension(self) -> int:
        return self._dim

    @property
    def batch_size(self) -> int:
        return 4

    async def embed(self, texts: Sequence[str], *, kind: EmbedKind = "passage") -> list[Vector]:
        self.calls.append(len(texts))
        return [trigram_vector(t, self._dim) for t in texts]

    async def warm(self) -> None:
        return None

    async def close(self) -> None:
        return None
