"""The vectors of recent questions, so asking again (a retry, a regenerate, the same question
from another user) does not embed again. Keyed by the embedding model and the exact text;
least recently used first out. Used from the event loop only."""

from __future__ import annotations

from collections import OrderedDict

from tokenrelay.retrieval.embedding import Vector

DEFAULT_SIZE = 1024  # 1024 x 384 floats: ~3 MB as Python lists


class QuestionCache:
    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        self._size = size
        self._vectors: OrderedDict[tuple[str, str], Vector] = OrderedDict()

    def get(self, model: str, text: str) -> Vector | None:
        vector = self._vectors.get((model, text))
        if vector is not None:
            self._vectors.move_to_end((model, text))
        return vector

    def put(self, model: str, text: str, vector: Vector) -> None:
        if self._size <= 0:
            return
        self._vectors[(model, text)] = vector
        self._vectors.move_to_end((model, text))
        while len(self._vectors) > self._size:
            self._vectors.popitem(last=False)

    def __len__(self) -> int:
        return len(self._vectors)
